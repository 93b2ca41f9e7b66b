//! The teed body, driven by hand over a scripted client body.

use std::collections::VecDeque;
use std::io;
use std::task::Waker;

use super::*;

/// A client body that yields its script one step per poll; `None` in the
/// script is a `Pending`.
struct Script {
    steps: VecDeque<Option<Result<Frame<Bytes>, io::Error>>>,
    hint: SizeHint,
}

impl Script {
    fn new(steps: Vec<Option<Result<Frame<Bytes>, io::Error>>>) -> Self {
        Self {
            steps: steps.into(),
            hint: SizeHint::default(),
        }
    }
}

impl Body for Script {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.steps.pop_front() {
            Some(None) => Poll::Pending,
            Some(Some(step)) => Poll::Ready(Some(step)),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn data(s: &'static str) -> Option<Result<Frame<Bytes>, io::Error>> {
    Some(Ok(Frame::data(Bytes::from_static(s.as_bytes()))))
}

const PENDING: Option<Result<Frame<Bytes>, io::Error>> = None;

/// What one poll of `reader` gives, as text.
fn poll(reader: &mut TeeReader<Script>) -> String {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(reader).poll_frame(&mut cx) {
        Poll::Pending => "pending".to_owned(),
        Poll::Ready(None) => "end".to_owned(),
        Poll::Ready(Some(Err(e))) => format!("error: {e}"),
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(d) => String::from_utf8(d.to_vec()).unwrap(),
            Err(frame) => format!("trailers: {:?}", frame.into_trailers().unwrap()),
        },
    }
}

fn polls(reader: &mut TeeReader<Script>, n: usize) -> Vec<String> {
    (0..n).map(|_| poll(reader)).collect()
}

#[test]
fn a_retry_replays_what_passed_then_reads_on_where_the_first_try_stopped() {
    let tee = Tee::new(
        Script::new(vec![data("ab"), data("cd"), PENDING, data("ef")]),
        1024,
    );
    let mut first = tee.reader().unwrap();
    assert_eq!(polls(&mut first, 3), ["ab", "cd", "pending"]);
    assert!(tee.is_replayable());

    let mut second = tee.reader().unwrap();
    assert_eq!(polls(&mut second, 3), ["abcd", "ef", "end"]);
    // The first try's connection, still pulling its body, is stopped.
    assert_eq!(
        poll(&mut first),
        "error: the request body was handed to a newer try"
    );
    // A third try gets the whole body from the copy.
    let mut third = tee.reader().unwrap();
    assert_eq!(polls(&mut third, 2), ["abcdef", "end"]);
}

#[test]
fn past_the_bound_the_copy_is_dropped_but_the_body_still_streams() {
    let tee = Tee::new(Script::new(vec![data("abc"), data("def"), data("g")]), 5);
    let mut first = tee.reader().unwrap();
    assert_eq!(poll(&mut first), "abc");
    assert!(tee.is_replayable());
    assert_eq!(poll(&mut first), "def");
    assert!(!tee.is_replayable());
    assert!(tee.reader().is_none());
    assert_eq!(polls(&mut first, 2), ["g", "end"]);
    let state = lock(&tee.shared);
    assert!(state.kept.is_empty() && state.kept.capacity() == 0 && state.overflowed);
}

#[test]
fn a_body_exactly_at_the_bound_is_kept() {
    let tee = Tee::new(Script::new(vec![data("abc"), data("de")]), 5);
    let mut first = tee.reader().unwrap();
    assert_eq!(polls(&mut first, 3), ["abc", "de", "end"]);
    assert!(tee.is_replayable());
    assert_eq!(polls(&mut tee.reader().unwrap(), 2), ["abcde", "end"]);
}

#[test]
fn trailers_are_kept_and_sent_again() {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let tee = Tee::new(
        Script::new(vec![data("ab"), Some(Ok(Frame::trailers(trailers)))]),
        1024,
    );
    let want = ["ab", "trailers: {\"grpc-status\": \"0\"}", "end"];
    assert_eq!(polls(&mut tee.reader().unwrap(), 3), want);
    assert_eq!(polls(&mut tee.reader().unwrap(), 3), want);
    assert_eq!(polls(&mut tee.reader().unwrap(), 3), want);
}

#[test]
fn a_client_body_that_failed_fails_every_later_try_too() {
    let tee = Tee::new(
        Script::new(vec![
            data("ab"),
            Some(Err(io::Error::other("client reset the stream"))),
        ]),
        1024,
    );
    let mut first = tee.reader().unwrap();
    assert_eq!(
        polls(&mut first, 2),
        ["ab", "error: client reset the stream"]
    );
    // Not a silently shorter body.
    assert_eq!(
        polls(&mut tee.reader().unwrap(), 2),
        ["ab", "error: client reset the stream"]
    );
}

#[test]
fn a_reader_announces_what_is_left_of_a_body_of_known_length() {
    let mut script = Script::new(vec![data("abc"), data("de")]);
    script.hint = SizeHint::with_exact(5);
    let tee = Tee::new(script, 2);
    let mut first = tee.reader().unwrap();
    assert_eq!(first.size_hint().exact(), Some(5));
    assert_eq!(poll(&mut first), "abc");
    assert_eq!(first.size_hint().exact(), Some(2));

    let unknown = Tee::new(Script::new(vec![data("abc")]), 2);
    let reader = unknown.reader().unwrap();
    assert_eq!(reader.size_hint().exact(), None);
}
