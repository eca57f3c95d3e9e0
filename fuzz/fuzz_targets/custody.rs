//! The custody statements (ceremony record, session record, key statement; formats.md §4.5-4.7)
//! on arbitrary bytes: never panic, whatever decodes re-encodes to exactly the input and keeps
//! its schema's invariants; `Statement::decode` (what the vault indexes) never panics either.
#![no_main]

use cairn_verifier::custody::{CeremonyRecord, KeyAction, KeyRole, KeyStatement, SessionRecord};
use cairn_verifier::statement::Statement;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        if let Ok(record) = CeremonyRecord::decode(data) {
            assert!(
                record.threshold >= 1 && u64::from(record.threshold) <= record.custodians.len()
            );
            assert_eq!(
                record.to_cbor(),
                data,
                "ceremony record re-encodes differently"
            );
        }
        if let Ok(session) = SessionRecord::decode(data) {
            assert!(!session.custodians.is_empty());
            assert_eq!(
                session.to_cbor(),
                data,
                "session record re-encodes differently"
            );
        }
        if let Ok(statement) = KeyStatement::decode(data) {
            match statement.action {
                KeyAction::Rotate => {
                    assert!(
                        statement.role != KeyRole::Root && !statement.new_certificate.is_empty()
                    );
                }
                KeyAction::Revoke => assert!(statement.new_certificate.is_empty()),
            }
            assert_eq!(
                statement.to_cbor(),
                data,
                "key statement re-encodes differently"
            );
        }
        let _ = Statement::decode(data);
    });
});
