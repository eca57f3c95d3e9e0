//! Untrusted bytes cost what they weigh (issue 20, item 6): `cairn audit verify` on small packs
//! whose counts claim millions of items ends with a named error under a 1 GiB address-space limit
//! (`prlimit --as`), where it used to reserve memory for the claimed counts and abort (SIGABRT).

use std::path::Path;
use std::process::{Command, Output};

/// The address-space limit the CLI runs under.
const LIMIT: u64 = 1 << 30;

/// `a7 00 01 01 60 02 00 03 80 04 80`: a pack map of 7, version 1, campaign "", generated at 0,
/// no certificates, no retention records.
const HEAD: [u8; 11] = [
    0xa7, 0x00, 0x01, 0x01, 0x60, 0x02, 0x00, 0x03, 0x80, 0x04, 0x80,
];
/// An array head claiming 0x0400_0000 (64 Mi) items, the most a section allows.
const HUGE: [u8; 5] = [0x9a, 0x04, 0x00, 0x00, 0x00];
/// A section's start: `[origin "", checkpoint h''`, then its runs.
const SECTION: [u8; 3] = [0x84, 0x60, 0x40];

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The family: each count of the pack in turn claims 64 Mi items in a file of a few bytes.
fn family() -> Vec<(&'static str, Vec<u8>)> {
    let empty_section = cat(&[&SECTION, &[0x80, 0x80]]);
    vec![
        // The issue's 20 bytes: the signer section's runs.
        ("signer runs", cat(&[&HEAD, &[0x05], &SECTION, &HUGE])),
        // One run whose entries count is huge.
        (
            "signer run entries",
            cat(&[&HEAD, &[0x05], &SECTION, &[0x81, 0x82, 0x00], &HUGE]),
        ),
        // No runs, a huge proof.
        (
            "signer proof",
            cat(&[&HEAD, &[0x05], &SECTION, &[0x80], &HUGE]),
        ),
        // A valid empty signer section, then the relay section's runs.
        (
            "relay runs",
            cat(&[&HEAD, &[0x05], &empty_section, &[0x06], &SECTION, &HUGE]),
        ),
        (
            "relay run entries",
            cat(&[
                &HEAD,
                &[0x05],
                &empty_section,
                &[0x06],
                &SECTION,
                &[0x81, 0x82, 0x00],
                &HUGE,
            ]),
        ),
        (
            "relay proof",
            cat(&[
                &HEAD,
                &[0x05],
                &empty_section,
                &[0x06],
                &SECTION,
                &[0x80],
                &HUGE,
            ]),
        ),
    ]
}

fn verify_limited(pack: &Path, root: &Path) -> Output {
    Command::new("prlimit")
        .arg(format!("--as={LIMIT}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .args(["audit", "verify"])
        .arg(pack)
        .arg("--root")
        .arg(root)
        .output()
        .expect("run prlimit (util-linux)")
}

#[test]
fn the_issues_pack_is_twenty_bytes() {
    assert_eq!(
        family()[0].1,
        [
            0xa7, 0x00, 0x01, 0x01, 0x60, 0x02, 0x00, 0x03, 0x80, 0x04, 0x80, 0x05, 0x84, 0x60,
            0x40, 0x9a, 0x04, 0x00, 0x00, 0x00
        ]
    );
}

#[test]
fn packs_claiming_millions_of_items_end_with_a_named_error_under_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Any bytes: the pack is refused before the root certificate is looked at.
    let root = dir.path().join("root.der");
    std::fs::write(&root, b"not a certificate").unwrap();
    for (what, bytes) in family() {
        let pack = dir.path().join("pack.cbor");
        std::fs::write(&pack, &bytes).unwrap();
        let out = verify_limited(&pack, &root);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit 1: verification failed (a signal, as SIGABRT was, has no exit code).
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what} ({} bytes): {:?}\nstderr: {stderr}",
            bytes.len(),
            out.status
        );
        assert!(
            stderr.contains("not an evidence pack")
                && stderr.contains("claims 67108864 items of at least"),
            "{what}: {stderr}"
        );
        println!("{what} ({} bytes): {}", bytes.len(), stderr.trim());
    }
}
