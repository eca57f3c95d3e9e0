//! Property: the checkpoint signed note (note.rs, C2SP tlog-checkpoint and signed-note) has exactly
//! one text form: it round-trips and verifies, and every malformed line, text, signature line or
//! limit is rejected with the specific `NoteError`.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

mod common;

use base64ct::{Base64, Encoding};
use cairn_verifier::Error;
use cairn_verifier::crypto::{Crypto, P256_SPKI_PREFIX, Software};
use cairn_verifier::error::NoteError;
use cairn_verifier::note::{self, Checkpoint, LogKey, MAX_NOTE_LEN, MAX_SIGNATURES};
use cairn_verifier::test_support::{Fixture, ORIGIN, public_key, test_key};
use cairn_verifier::types::{Hash, TreeSize};
use p256::ecdsa::signature::Verifier;

// =============================================================================================
// Checkpoint (C2SP tlog-checkpoint in a C2SP signed note)

fn log_signer() -> (p256::ecdsa::SigningKey, LogKey<'static>) {
    let key = test_key(Fixture::LOG_KEY);
    let pinned = LogKey::new(ORIGIN, ORIGIN, public_key(&key), &Software).unwrap();
    (key, pinned)
}

fn signed(body: &str) -> String {
    let (key, pinned) = log_signer();
    note::write::sign(body, &pinned, &key).unwrap()
}

/// The signature block (after the blank line) of a valid note.
fn signature_block() -> String {
    let root = [0x33; 32];
    let note = signed(&note::write::body(ORIGIN, TreeSize(5), &root, &[]));
    note.split_once("\n\n").unwrap().1.to_owned()
}

fn root_b64(root: &Hash) -> String {
    Base64::encode_string(root)
}

#[test]
fn checkpoint_round_trips_and_verifies() {
    let (key, pinned) = log_signer();
    for (size, ext) in [
        (0u64, &[][..]),
        (1, &["witness/extension one"][..]),
        (u64::MAX, &["a", "— not a signature in the text"][..]),
    ] {
        let root: Hash = Software.sha256_of(&[&size.to_be_bytes()]);
        let body = note::write::body(ORIGIN, TreeSize(size), &root, ext);
        assert_eq!(
            body,
            format!(
                "{ORIGIN}\n{size}\n{}\n{}",
                root_b64(&root),
                ext.iter().flat_map(|e| [*e, "\n"]).collect::<String>()
            )
        );
        let signed = note::write::sign(&body, &pinned, &key).unwrap();
        let c = Checkpoint::parse(signed.as_bytes()).unwrap();
        assert_eq!(c.origin, ORIGIN);
        assert_eq!(c.size, TreeSize(size));
        assert_eq!(c.root, root);
        assert_eq!(c.text, body);
        assert_eq!(
            c.extensions,
            ext.iter().flat_map(|e| [*e, "\n"]).collect::<String>()
        );
        assert_eq!(c.verify(&pinned, &Software), Ok(()));

        // independently: one line "— <name> base64(key id || DER)", the DER signature verifies
        // with p256 over the note text, and the key id is SHA-256(SPKI)[..4]
        let lines: Vec<_> = c.signature_lines().collect();
        assert_eq!(lines.len(), 1);
        let line = lines[0].unwrap();
        assert_eq!(line.name, ORIGIN);
        assert_eq!(signed, format!("{body}\n— {ORIGIN} {}\n", line.base64));
        let blob = Base64::decode_vec(line.base64).unwrap();
        let spki = [
            P256_SPKI_PREFIX.to_vec(),
            key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
        ]
        .concat();
        assert_eq!(blob[..4], Software.sha256_of(&[&spki])[..4]);
        assert_eq!(pinned.key_id[..], blob[..4]);
        let der = p256::ecdsa::Signature::from_der(&blob[4..]).unwrap();
        key.verifying_key().verify(body.as_bytes(), &der).unwrap();
    }
    // extension lines that would break the note are dropped by the writer
    let body = note::write::body(
        ORIGIN,
        TreeSize(3),
        &[0; 32],
        &["", "ok", "bad\nline", "tab\t"],
    );
    assert_eq!(
        Checkpoint::parse(signed(&body).as_bytes())
            .unwrap()
            .extensions,
        "ok\n"
    );
}

fn parse_err(note: &str) -> NoteError {
    Checkpoint::parse(note.as_bytes()).expect_err(note)
}

/// A valid signature block and root line to build notes from.
fn note_pieces() -> (String, String) {
    (signature_block(), root_b64(&[0x33; 32]))
}

#[test]
fn checkpoint_parser_rejects_bad_lines() {
    let (sigs, root) = note_pieces();
    let note = |body: &str| format!("{body}\n{sigs}");
    // sanity: the pieces make a valid note
    assert!(Checkpoint::parse(note(&format!("{ORIGIN}\n5\n{root}\n")).as_bytes()).is_ok());

    // no blank line between text and signatures
    assert_eq!(
        parse_err(&format!("{ORIGIN}\n5\n{root}\n{sigs}")),
        NoteError::NoSignatureBlock
    );
    assert_eq!(parse_err(""), NoteError::NoSignatureBlock);
    // too few lines
    assert_eq!(
        parse_err(&note(&format!("{ORIGIN}\n5\n"))),
        NoteError::MissingLine
    );
    // origin
    assert_eq!(
        parse_err(&note(&format!("\n5\n{root}\n"))),
        NoteError::EmptyOrigin
    );
    // size: canonical decimal u64
    for size in [
        "05",
        "00",
        "5a",
        "0x5",
        "+5",
        "-1",
        " 5",
        "5 ",
        "",
        "١",
        "18446744073709551616",
        "99999999999999999999",
        "100000000000000000000",
    ] {
        assert_eq!(
            parse_err(&note(&format!("{ORIGIN}\n{size}\n{root}\n"))),
            NoteError::BadSize,
            "{size:?}"
        );
    }
    let max = note(&format!("{ORIGIN}\n18446744073709551615\n{root}\n"));
    assert_eq!(
        Checkpoint::parse(max.as_bytes()).unwrap().size,
        TreeSize(u64::MAX)
    );
    // root: canonical standard base64 of exactly 32 bytes
    let mut non_canonical = root.clone().into_bytes();
    // 32 bytes end in a group of two: its third character carries two unused bits, which must
    // be zero ('M' = 12 here; 'N' = 13 decodes to the same bytes with a non-zero unused bit)
    assert_eq!(root.as_bytes()[42], b'M');
    non_canonical[42] = b'N';
    for bad in [
        "not base64!".to_owned(),
        root_b64(&[0x33; 32])[..43].to_owned(), // padding dropped
        Base64::encode_string(&[0x33; 31]),
        Base64::encode_string(&[0x33; 33]),
        Base64::encode_string(&[0x33; 64]),
        String::new(),
        String::from_utf8(non_canonical).unwrap(),
        Base64::encode_string(&[0xfb; 32])
            .replace('+', "-")
            .replace('/', "_"),
        format!(" {root}"),
    ] {
        assert_eq!(
            parse_err(&note(&format!("{ORIGIN}\n5\n{bad}\n"))),
            NoteError::BadRootHash,
            "{bad:?}"
        );
    }
}

#[test]
fn checkpoint_parser_rejects_bad_text() {
    let (sigs, root) = note_pieces();
    let note = |body: &str| format!("{body}\n{sigs}");
    // empty extension line
    assert_eq!(
        parse_err(&note(&format!("{ORIGIN}\n5\n{root}\next\n\nmore\n"))),
        NoteError::EmptyLine
    );
    assert_eq!(
        parse_err(&note(&format!("{ORIGIN}\n5\n{root}\n\n"))),
        NoteError::EmptyLine
    );
    // control characters, CR, invalid UTF-8
    for (bad, offset) in [
        ("cairn.test\tlog", 10),
        ("cairn.test\u{0}log", 10),
        ("cairn.test\u{1b}log", 10),
        ("cairn.test\u{7f}log", 10),
        ("cairn.test/log\r", 14),
    ] {
        assert_eq!(
            parse_err(&note(&format!("{bad}\n5\n{root}\n"))),
            NoteError::NotText { offset },
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_err(&format!("{ORIGIN}\r\n5\r\n{root}\r\n\r\n{sigs}")),
        NoteError::NotText {
            offset: ORIGIN.len()
        }
    );
    let mut bytes = note(&format!("{ORIGIN}\n5\n{root}\n")).into_bytes();
    bytes[3] = 0xff;
    assert_eq!(
        Checkpoint::parse(&bytes),
        Err(NoteError::NotText { offset: 3 })
    );
}

#[test]
fn checkpoint_parser_rejects_bad_signature_lines() {
    let (sigs, root) = note_pieces();
    let body = format!("{ORIGIN}\n5\n{root}\n");
    let b64 = sigs.trim_end().rsplit_once(' ').unwrap().1.to_owned();
    for (line, n) in [
        (format!("- {ORIGIN} {b64}\n"), 1),       // hyphen, not em dash
        (format!("– {ORIGIN} {b64}\n"), 1),       // en dash
        (format!("—{ORIGIN} {b64}\n"), 1),        // no space after the dash
        (format!("— {ORIGIN}\n"), 1),             // no signature
        (format!("—  {b64}\n"), 1),               // empty name
        (format!("— cairn test/log {b64}\n"), 1), // name with a space
        (format!("— cairn+test/log {b64}\n"), 1), // name with '+'
        (format!("— {ORIGIN} {b64} \n"), 1),      // trailing space
        (format!("— {ORIGIN} AAAA\n"), 1),        // too short to hold a key id
        (format!("— {ORIGIN} {b64}"), 1),         // no final newline
        (format!("{sigs}— {ORIGIN} {b64}!\n"), 2),
        (String::new(), 1), // no signature at all
    ] {
        assert_eq!(
            parse_err(&format!("{body}\n{line}")),
            NoteError::BadSignatureLine { line: n },
            "{line:?}"
        );
    }
}

#[test]
fn checkpoint_parser_limits() {
    let (sigs, root) = note_pieces();
    let body = format!("{ORIGIN}\n5\n{root}\n");
    // at most 100 signature lines
    let witness = "— w AAAAAAAA\n";
    let hundred = format!("{body}\n{}{sigs}", witness.repeat(MAX_SIGNATURES - 1));
    assert!(hundred.len() <= MAX_NOTE_LEN);
    let (_, pinned) = log_signer();
    assert_eq!(
        Checkpoint::parse(hundred.as_bytes())
            .unwrap()
            .verify(&pinned, &Software),
        Ok(())
    );
    let hundred_one = format!("{body}\n{}{sigs}", witness.repeat(MAX_SIGNATURES));
    assert_eq!(parse_err(&hundred_one), NoteError::TooManySignatures);

    // at most 8 KiB
    let mut at_limit = format!("{ORIGIN}\n5\n{root}\n");
    let tail = format!("\n{sigs}");
    at_limit.push_str(&"y".repeat(MAX_NOTE_LEN - at_limit.len() - tail.len() - 1));
    at_limit.push('\n');
    at_limit.push_str(&tail);
    assert_eq!(at_limit.len(), MAX_NOTE_LEN);
    assert!(Checkpoint::parse(at_limit.as_bytes()).is_ok());
    let over = at_limit.replacen("yy", "yyy", 1);
    assert_eq!(over.len(), MAX_NOTE_LEN + 1);
    assert_eq!(parse_err(&over), NoteError::TooLarge);
    assert_eq!(
        Checkpoint::parse(&vec![b'a'; 1 << 20]),
        Err(NoteError::TooLarge)
    );
}

#[test]
fn checkpoint_verify_rejects() {
    let (key, pinned) = log_signer();
    let root = [0x44; 32];
    let body = note::write::body(ORIGIN, TreeSize(9), &root, &[]);
    let ours = signed(&body);
    let our_line = ours.split_once("\n\n").unwrap().1.to_owned();
    let verify = |note: &str| {
        Checkpoint::parse(note.as_bytes())
            .unwrap()
            .verify(&pinned, &Software)
    };
    assert_eq!(verify(&ours), Ok(()));

    // another log's checkpoint, signed with the pinned key and name
    let other_origin = note::write::body("cairn.test/other", TreeSize(9), &root, &[]);
    assert_eq!(
        verify(&note::write::sign(&other_origin, &pinned, &key).unwrap()),
        Err(Error::CheckpointOrigin)
    );

    // signed by another key under the pinned name: the key id differs
    let impostor = LogKey::new(ORIGIN, ORIGIN, public_key(&test_key(7)), &Software).unwrap();
    assert_ne!(impostor.key_id, pinned.key_id);
    let forged = note::write::sign(&body, &impostor, &test_key(7)).unwrap();
    assert_eq!(verify(&forged), Err(Error::CheckpointKeyMissing));
    // the pinned key id under another name
    let renamed = LogKey {
        name: "cairn.test/renamed",
        ..pinned
    };
    let renamed_note = note::write::sign(&body, &renamed, &key).unwrap();
    assert_eq!(verify(&renamed_note), Err(Error::CheckpointKeyMissing));

    // the pinned key id, but the signature is not strict DER or not over this text
    let blob = Base64::decode_vec(our_line.trim_end().rsplit_once(' ').unwrap().1).unwrap();
    let (kid, der) = blob.split_at(4);
    let line_with = |der: &[u8]| {
        format!(
            "— {ORIGIN} {}\n",
            Base64::encode_string(&[kid, der].concat())
        )
    };
    // (corruptions that keep the blob within a DER signature's size, so the line is still read)
    let mut wrong_len = der.to_vec();
    wrong_len[1] -= 1;
    let mut not_integer = der.to_vec();
    not_integer[2] = 0x03;
    let mut bad_ders: Vec<Vec<u8>> = vec![
        der[..der.len() - 1].to_vec(), // truncated
        [&[0x31], &der[1..]].concat(), // SET, not SEQUENCE
        wrong_len,                     // sequence length disagrees
        not_integer,                   // BIT STRING, not INTEGER
        vec![0x30, 0x00],              // empty
    ];
    let mut flipped = der.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1; // still DER, another s
    bad_ders.push(flipped);
    for bad in &bad_ders {
        assert_eq!(
            verify(&format!("{body}\n{}", line_with(bad))),
            Err(Error::CheckpointSignature),
            "{bad:02x?}"
        );
    }
    // a valid signature over another text
    let other_text = signed(&note::write::body(ORIGIN, TreeSize(10), &root, &[]));
    let other_line = other_text.split_once("\n\n").unwrap().1;
    assert_eq!(
        verify(&format!("{body}\n{other_line}")),
        Err(Error::CheckpointSignature)
    );

    // other signatures are ignored: witnesses, unknown keys, our name with another key id or with
    // an undecodable blob
    let witness_key = test_key(8);
    let witness = LogKey::new(
        ORIGIN,
        "witness.example/w1",
        public_key(&witness_key),
        &Software,
    )
    .unwrap();
    let witness_line = note::write::sign(&body, &witness, &witness_key)
        .unwrap()
        .split_once("\n\n")
        .unwrap()
        .1
        .to_owned();
    let forged_line = forged.split_once("\n\n").unwrap().1.to_owned();
    let long_line = format!("— {ORIGIN} {}\n", Base64::encode_string(&[1u8; 120]));
    for lines in [
        vec![&witness_line, &our_line],
        vec![&our_line, &witness_line],
        vec![&forged_line, &our_line],
        vec![&long_line, &witness_line, &our_line],
    ] {
        let note = format!(
            "{body}\n{}",
            lines.iter().map(|l| l.as_str()).collect::<String>()
        );
        assert_eq!(verify(&note), Ok(()), "{note}");
    }
    assert_eq!(
        verify(&format!("{body}\n{witness_line}")),
        Err(Error::CheckpointKeyMissing)
    );

    // a pinned key must itself be valid in a note
    let public = public_key(&key);
    assert!(LogKey::new("", ORIGIN, public, &Software).is_none());
    assert!(LogKey::new("a\nb", ORIGIN, public, &Software).is_none());
    assert!(LogKey::new(ORIGIN, "a b", public, &Software).is_none());
    assert!(LogKey::new(ORIGIN, "a+b", public, &Software).is_none());
    assert!(LogKey::new(ORIGIN, "", public, &Software).is_none());
}
