use std::fmt;

use super::error_chain;

/// An error with a message and an optional cause.
#[derive(Debug)]
struct Layer(&'static str, Option<Box<Layer>>);

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Layer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|e| e as _)
    }
}

fn layers(texts: &[&'static str]) -> Layer {
    texts
        .iter()
        .rev()
        .fold(None, |cause, text| Some(Layer(text, cause.map(Box::new))))
        .expect("at least one layer")
}

#[test]
fn every_cause_is_appended_once() {
    let e = layers(&["transport error", "tcp connect error", "Connection refused"]);
    assert_eq!(
        error_chain(&e),
        "transport error: tcp connect error: Connection refused"
    );
}

#[test]
fn a_cause_the_text_already_says_is_left_out() {
    let e = layers(&[
        "cannot reach the CA at 127.0.0.1:1: Connection refused",
        "Connection refused",
    ]);
    assert_eq!(
        error_chain(&e),
        "cannot reach the CA at 127.0.0.1:1: Connection refused"
    );
}

#[test]
fn an_error_without_a_source_is_its_message() {
    assert_eq!(error_chain(&layers(&["bad flag"])), "bad flag");
}
