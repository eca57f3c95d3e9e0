//! Property: the ceremony record's optional key 13 (token setup, formats.md §4.5). A record of a
//! token the ceremony initialised is the 13-pair map it always was; an adopted token's record is
//! the same map with 14 pairs and `13: 1` last; any other value, or the pair count without the
//! key, is refused.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use cairn_verifier::custody::{CeremonyRecord, TokenSetup};
use cairn_verifier::types::{Name, TextList, UnixTime};

const CUSTODIANS: [&str; 3] = ["alice", "bob", "carol"];
const CERT: [u8; 40] = [0x30; 40];

fn record(token_setup: TokenSetup) -> CeremonyRecord<'static> {
    CeremonyRecord {
        ceremony_id: [7; 16],
        performed_at: UnixTime(1_795_651_200),
        threshold: 2,
        custodians: TextList::Slice(&CUSTODIANS),
        token: Name::new("oem-hsm").unwrap(),
        origin: Name::new("oem.example/log").unwrap(),
        root_certificate: &CERT,
        release_certificate: &CERT,
        log_certificate: &CERT,
        software: Name::new("cairn (cairn 0.1.0)").unwrap(),
        software_digest: [9; 32],
        token_setup,
    }
}

#[test]
fn both_setups_round_trip_and_an_initialised_record_has_no_key_13() {
    for setup in [TokenSetup::Initialised, TokenSetup::AdoptedPinRotated] {
        let bytes = record(setup).to_cbor();
        assert_eq!(CeremonyRecord::decode(&bytes).unwrap(), record(setup));
    }
    let initialised = record(TokenSetup::Initialised).to_cbor();
    let adopted = record(TokenSetup::AdoptedPinRotated).to_cbor();
    // map(13) = 0xad, map(14) = 0xae; the adopted record appends 13: 1 (0x0d 0x01).
    assert_eq!(initialised[0], 0xad);
    assert_eq!(adopted[0], 0xae);
    assert_eq!(&adopted[1..adopted.len() - 2], &initialised[1..]);
    assert_eq!(&adopted[adopted.len() - 2..], &[0x0d, 0x01]);
}

#[test]
fn other_token_setups_are_refused() {
    let adopted = record(TokenSetup::AdoptedPinRotated).to_cbor();
    // 13: 0 and 13: 2 are not defined.
    for value in [0x00u8, 0x02] {
        let mut bad = adopted.clone();
        *bad.last_mut().unwrap() = value;
        assert!(CeremonyRecord::decode(&bad).is_err(), "13: {value}");
    }
    // 14 pairs announced, 13 present; 13 announced, 14 present.
    let mut short = record(TokenSetup::Initialised).to_cbor();
    short[0] = 0xae;
    assert!(CeremonyRecord::decode(&short).is_err());
    let mut long = adopted;
    long[0] = 0xad;
    assert!(CeremonyRecord::decode(&long).is_err());
    // 15 pairs: refused by the header.
    let mut more = record(TokenSetup::AdoptedPinRotated).to_cbor();
    more[0] = 0xaf;
    more.extend([0x0e, 0x00]);
    assert!(CeremonyRecord::decode(&more).is_err());
}
