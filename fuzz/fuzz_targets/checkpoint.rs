//! `Checkpoint::parse` on arbitrary bytes: never panics, and a parsed checkpoint is the canonical
//! spelling of its fields (decimal size without leading zeros, canonical base64 root), with text,
//! blank line and signature lines making up the whole note.
#![no_main]

use cairn_verifier::note::Checkpoint;
use cairn_verifier::note::write::body;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        let Ok(checkpoint) = Checkpoint::parse(data) else {
            return;
        };
        let note = format!("{}\n{}", checkpoint.text, checkpoint.signatures);
        assert_eq!(
            note.as_bytes(),
            data,
            "text and signatures do not make up the note"
        );
        let header = body(checkpoint.origin, checkpoint.size, &checkpoint.root, &[]);
        assert_eq!(
            format!("{header}{}", checkpoint.extensions),
            checkpoint.text,
            "checkpoint text is not the canonical spelling of its fields"
        );
        assert!(checkpoint.text.ends_with('\n'));
        assert!(checkpoint.extensions.is_empty() || checkpoint.extensions.ends_with('\n'));
        let mut lines = 0usize;
        for line in checkpoint.signature_lines() {
            assert!(line.is_ok(), "parse accepted a bad signature line");
            lines += 1;
        }
        assert!((1..=cairn_verifier::note::MAX_SIGNATURES).contains(&lines));
    });
});
