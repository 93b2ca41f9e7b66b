use super::*;

fn args(data: &Path, out: &Path) -> BootstrapArgs {
    BootstrapArgs {
        namespace: "default".to_owned(),
        service_account: "reviews".to_owned(),
        data_dir: data.to_owned(),
        out_dir: Some(out.to_owned()),
        kubernetes: false,
    }
}

#[test]
fn writes_a_token_the_key_accepts_and_the_ca_certificate() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let key = TokenKey::load_or_create(data.path()).expect("key");
    fs::write(
        data.path().join(CA_CERT_FILE),
        "-----BEGIN CERTIFICATE-----\n",
    )
    .expect("ca");

    args(data.path(), out.path())
        .write(out.path())
        .expect("written");

    let token = fs::read_to_string(out.path().join(TOKEN_FILE)).expect("token");
    let identity = key
        .verify(token.trim(), std::time::SystemTime::now())
        .expect("the control plane's key accepts it");
    assert_eq!(identity.service_account(), "reviews");
    assert_eq!(identity.namespace(), "default");
    assert_eq!(
        fs::read_to_string(out.path().join(CA_CERT_FILE)).expect("ca"),
        "-----BEGIN CERTIFICATE-----\n"
    );
    let leftovers: Vec<_> = fs::read_dir(out.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    let objects = args(data.path(), out.path())
        .kubernetes_objects()
        .expect("objects");
    assert!(objects.contains("name: remora-token-reviews\n  namespace: default\n"));
    assert!(objects.contains("ca-cert.pem: |\n    -----BEGIN CERTIFICATE-----\n"));
}

#[test]
fn refuses_to_make_a_key_of_its_own() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let error = args(data.path(), out.path())
        .write(out.path())
        .expect_err("no key");
    assert!(error.contains("start `remora serve"), "{error}");
    assert!(!data.path().join(TOKEN_KEY_FILE).exists());
}
