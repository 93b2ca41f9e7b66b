use super::*;

#[test]
fn the_mode_and_the_identity_choose_the_handshake() {
    use Handshake::*;
    use MtlsMode::*;
    for (mode, identity, expected) in [
        (Strict, true, TlsRequired),
        (Permissive, true, Detect),
        (Disable, true, Plaintext),
        (Strict, false, Plaintext),
        (Permissive, false, Plaintext),
        (Disable, false, Plaintext),
    ] {
        assert_eq!(
            handshake_for(mode, identity),
            expected,
            "{mode:?} {identity}"
        );
    }
}
