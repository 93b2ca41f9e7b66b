//! `remora bootstrap`: writes what one service account's proxies need to
//! get their first certificate into a directory: `token` (for the proxy's
//! `--token-file`) and `ca-cert.pem` (for `--ca-cert`).
//!
//! It is the token step of the Compose example (`examples/compose`): a
//! one-shot service per service account, run once the control plane is
//! healthy, with the control plane's data volume mounted read-only and that
//! account's own bootstrap volume, which only its sidecars mount. The token
//! is the one `remora token create` prints; the key is never written.
//!
//! With `--kubernetes` it prints the same two things as Kubernetes objects
//! instead, for `kubectl apply -f -`: the Secret `remora-token-<account>`
//! (key `token`) and the ConfigMap `remora-ca-root` (key `ca-cert.pem`) in
//! the workload's namespace, which `remora inject` mounts into each pod.
//!
//! Both files are written whole (a temporary file renamed into place) with
//! mode 0644: the sidecars run as another uid (1337) than the control plane,
//! so the volume, mounted by that account's sidecars alone, is what keeps
//! the token to them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::identity::DEFAULT_DATA_DIR;
use crate::token::{TOKEN_KEY_FILE, TokenIdentity, TokenKey};

/// The token's file name in the output directory.
pub const TOKEN_FILE: &str = "token";
/// The CA certificate's file name, in the data and the output directory.
pub const CA_CERT_FILE: &str = "ca-cert.pem";

/// `remora bootstrap`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapArgs {
    /// The workload's namespace.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// The workload's service account.
    #[arg(long, short = 's')]
    pub service_account: String,
    /// The control plane's data directory: its token key and CA certificate
    /// must be there already (`remora serve` makes them).
    #[arg(long, env = "REMORA_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where `token` and `ca-cert.pem` are written.
    #[arg(
        long,
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    pub out_dir: Option<PathBuf>,
    /// Print a Secret with the token and a ConfigMap with the CA certificate
    /// (the names `remora inject` mounts) instead of writing files.
    #[arg(long)]
    pub kubernetes: bool,
}

impl BootstrapArgs {
    /// Runs the command: one line on stdout naming what was written.
    pub fn run(&self) -> ExitCode {
        let result = match &self.out_dir {
            Some(dir) => self.write(dir).map(|()| {
                format!(
                    "wrote {} and {} for spiffe://.../ns/{}/sa/{}\n",
                    dir.join(TOKEN_FILE).display(),
                    dir.join(CA_CERT_FILE).display(),
                    self.namespace,
                    self.service_account
                )
            }),
            None => self.kubernetes_objects(),
        };
        match result {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        }
    }

    /// Writes both files into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let (token, ca) = self.material()?;
        write_whole(&dir.join(CA_CERT_FILE), ca.as_bytes())?;
        write_whole(&dir.join(TOKEN_FILE), format!("{token}\n").as_bytes())?;
        Ok(())
    }

    /// The Secret and the ConfigMap, as YAML.
    pub fn kubernetes_objects(&self) -> Result<String, String> {
        use base64::Engine as _;
        let (token, ca) = self.material()?;
        let token = base64::engine::general_purpose::STANDARD.encode(token);
        let namespace = &self.namespace;
        let account = &self.service_account;
        let ca: String = ca.lines().map(|l| format!("    {l}\n")).collect();
        Ok(format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}{account}\n  namespace: {namespace}\n\
             type: Opaque\ndata:\n  token: {token}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  \
             name: {}\n  namespace: {namespace}\ndata:\n  ca-cert.pem: |\n{ca}",
            crate::inject::TOKEN_SECRET_PREFIX,
            crate::inject::CA_CONFIG_MAP,
        ))
    }

    /// The token and the CA certificate (PEM).
    fn material(&self) -> Result<(String, String), String> {
        let identity = TokenIdentity::new(&self.namespace, &self.service_account)
            .map_err(|e| e.to_string())?;
        // The key must exist: a new one made here would not be the control
        // plane's, and every token from it would be refused.
        let key_path = self.data_dir.join(TOKEN_KEY_FILE);
        if !key_path.exists() {
            return Err(format!(
                "{} does not exist: start `remora serve --data-dir {}` first",
                key_path.display(),
                self.data_dir.display()
            ));
        }
        let key = TokenKey::load_or_create(&self.data_dir).map_err(|e| e.to_string())?;
        let ca_path = self.data_dir.join(CA_CERT_FILE);
        let ca = fs::read_to_string(&ca_path).map_err(|e| {
            format!(
                "cannot read {}: {e} (`remora serve` makes it on first start)",
                ca_path.display()
            )
        })?;
        Ok((key.issue(&identity), ca))
    }
}

/// Writes `bytes` to a temporary file beside `path` (mode 0644), then
/// renames it into place: a reader sees the old file or the new one.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
