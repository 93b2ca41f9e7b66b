//! `remora inject`: adds Remora's init container and sidecar to Kubernetes
//! manifests or to a Compose file, as `istioctl kube-inject` and `linkerd
//! inject` do, and writes the result to stdout.
//!
//! The input is read whole (at most [`MAX_INPUT`]), as one YAML stream. A
//! stream whose first document has top-level `services` and no `kind` is a
//! Compose file ([`compose`]); anything else is Kubernetes objects
//! ([`kube`]): workloads get their pod template injected, other kinds pass
//! through unchanged. Istio's annotations are honoured ([`annotations`]).
//! Injecting twice gives the same output as injecting once. An error names
//! the document (its number, kind and name) and the field.
//!
//! Comments are not kept, except the input's leading comment lines: the
//! output is the input's data, written again.

mod annotations;
mod compose;
mod kube;
mod yaml;

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use saphyr::{LoadableYamlNode, Yaml};

use self::yaml::{FieldError, get, get_str};

/// The Secret holding a service account's bootstrap token, in Kubernetes, is
/// this prefix and the service account's name (key `token`).
pub const TOKEN_SECRET_PREFIX: &str = "remora-token-";
/// The ConfigMap holding the CA certificate, in Kubernetes (key `ca-cert.pem`).
pub const CA_CONFIG_MAP: &str = "remora-ca-root";

/// The most input `inject` reads.
pub const MAX_INPUT: u64 = 32 * 1024 * 1024;

/// `remora inject`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// The manifests or Compose file; `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// The proxy image (sidecar and init).
    #[arg(long, default_value = concat!("remora-proxy:", env!("CARGO_PKG_VERSION")))]
    pub proxy_image: String,
    /// The control plane image (Compose: the control plane and bootstrap services it adds).
    #[arg(long, default_value = concat!("remora:", env!("CARGO_PKG_VERSION")))]
    pub control_plane_image: String,
    /// The sidecars' `--control-plane`. Default: Kubernetes,
    /// `http://remora.remora-system.svc:15010` (deploy/kubernetes); Compose,
    /// `http://<control plane service>:15010`.
    #[arg(long)]
    pub control_plane: Option<String>,
    /// Compose: the service that runs the control plane (added when missing).
    #[arg(long, default_value = "remora")]
    pub control_plane_service: String,
    /// The sidecars' OTLP collector, e.g. `http://jaeger:4317`.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
}

/// What the injected pods get, beyond what their annotations say.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The proxy image.
    pub proxy_image: String,
    /// The control plane image (Compose).
    pub control_plane_image: String,
    /// The sidecars' `--control-plane`.
    pub control_plane: String,
    /// Compose: the control plane's service name.
    pub control_plane_service: String,
    /// The sidecars' `--otlp-endpoint`.
    pub otlp_endpoint: Option<String>,
}

impl Settings {
    /// Settings from the flags, the control plane's address defaulted for `format`.
    fn from_args(args: &InjectArgs, format: Format) -> Self {
        let control_plane = args.control_plane.clone().unwrap_or_else(|| match format {
            Format::Kubernetes => "http://remora.remora-system.svc:15010".to_owned(),
            Format::Compose => format!("http://{}:15010", args.control_plane_service),
        });
        Self {
            proxy_image: args.proxy_image.clone(),
            control_plane_image: args.control_plane_image.clone(),
            control_plane,
            control_plane_service: args.control_plane_service.clone(),
            otlp_endpoint: args.otlp_endpoint.clone(),
        }
    }
}

/// What the input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Kubernetes objects, one per document (or `List`s).
    Kubernetes,
    /// One Compose file.
    Compose,
}

/// Why `inject` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectError {
    /// The input's name (a path, or `-`).
    pub input: String,
    /// The document, counted from 1, when the error is in one.
    pub document: Option<usize>,
    /// The document's kind and name, when it has them.
    pub object: Option<String>,
    /// The field, from the document's root.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.input)?;
        if let Some(n) = self.document {
            write!(f, ": document {n}")?;
            if let Some(object) = &self.object {
                write!(f, " ({object})")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InjectError {}

/// The result of an injection: the output text and one note per pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// What the input was.
    pub format: Format,
    /// The injected YAML.
    pub output: String,
    /// For stderr: which objects were injected or skipped, and why.
    pub notes: Vec<String>,
}

impl InjectArgs {
    /// Runs `remora inject`: the result on stdout, notes and errors on stderr.
    pub fn run(&self) -> ExitCode {
        let input = match self.read_input() {
            Ok(text) => text,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        };
        let name = self.file.display().to_string();
        match inject(&input, &name, self) {
            Ok(injected) => {
                for note in &injected.notes {
                    eprintln!("{note}");
                }
                print!("{}", injected.output);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn read_input(&self) -> Result<String, String> {
        let name = self.file.display();
        let mut bytes = Vec::new();
        let read = if self.file.as_os_str() == "-" {
            std::io::stdin()
                .lock()
                .take(MAX_INPUT + 1)
                .read_to_end(&mut bytes)
        } else {
            std::fs::File::open(&self.file)
                .and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut bytes))
        };
        read.map_err(|e| format!("cannot read {name}: {e}"))?;
        if bytes.len() as u64 > MAX_INPUT {
            return Err(format!("{name} is larger than {MAX_INPUT} bytes"));
        }
        String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 text"))
    }
}

/// Injects `input` (named `name` in errors) with the flags `args`.
pub fn inject(input: &str, name: &str, args: &InjectArgs) -> Result<Injected, InjectError> {
    let error = |document: Option<usize>, object: Option<String>, e: FieldError| InjectError {
        input: name.to_owned(),
        document,
        object,
        field: Some(e.field),
        message: e.message,
    };
    let mut docs = Yaml::load_from_str(input).map_err(|e| InjectError {
        input: name.to_owned(),
        document: None,
        object: None,
        field: None,
        message: format!("not valid YAML: {e}"),
    })?;
    // An empty document (a stray `---`) carries nothing: dropped.
    docs.retain(|d| !d.is_null());
    for (i, doc) in docs.iter().enumerate() {
        yaml::check_writable(doc, "").map_err(|e| error(Some(i + 1), describe_object(doc), e))?;
    }
    let format = if docs.first().is_some_and(compose::is_compose) {
        Format::Compose
    } else {
        Format::Kubernetes
    };
    let settings = Settings::from_args(args, format);
    let mut notes = Vec::new();
    match format {
        Format::Compose => {
            if docs.len() > 1 {
                return Err(InjectError {
                    input: name.to_owned(),
                    document: Some(2),
                    object: None,
                    field: None,
                    message: "a Compose file is one document".to_owned(),
                });
            }
            let injected = compose::inject_compose(&mut docs[0], &settings)
                .map_err(|e| error(None, None, e))?;
            for service in injected {
                notes.push(format!("{name}: services.{service}: injected"));
            }
        }
        Format::Kubernetes => {
            for (i, doc) in docs.iter_mut().enumerate() {
                let object = describe_object(doc);
                let outcomes = kube::inject_object(doc, &settings)
                    .map_err(|e| error(Some(i + 1), object.clone(), e))?;
                let object = object.unwrap_or_else(|| "object".to_owned());
                for outcome in outcomes {
                    match outcome {
                        kube::Outcome::Injected => {
                            notes.push(format!("{name}: document {} ({object}): injected", i + 1));
                        }
                        kube::Outcome::Skipped(why) => notes.push(format!(
                            "{name}: document {} ({object}): not injected: {why}",
                            i + 1
                        )),
                        kube::Outcome::NotAWorkload => {}
                    }
                }
            }
        }
    }
    let mut output = leading_comments(input);
    output += &yaml::write_documents(&docs).map_err(|e| InjectError {
        input: name.to_owned(),
        document: None,
        object: None,
        field: None,
        message: format!("cannot write the result: {e}"),
    })?;
    Ok(Injected {
        format,
        output,
        notes,
    })
}

/// The comment lines (and blank lines between them) that open the input.
fn leading_comments(input: &str) -> String {
    let mut out = String::new();
    for line in input.lines() {
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        } else if !line.trim().is_empty() {
            break;
        }
    }
    out
}

/// `Deployment default/web`, for errors and notes.
fn describe_object(doc: &Yaml<'_>) -> Option<String> {
    let kind = get_str(doc, "kind", "").ok().flatten()?;
    let metadata = get(doc, "metadata");
    let name = metadata.and_then(|m| get_str(m, "name", "").ok().flatten());
    let namespace = metadata.and_then(|m| get_str(m, "namespace", "").ok().flatten());
    Some(match (namespace, name) {
        (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
        (None, Some(n)) => format!("{kind} {n}"),
        _ => kind.to_owned(),
    })
}

#[cfg(test)]
mod tests;
