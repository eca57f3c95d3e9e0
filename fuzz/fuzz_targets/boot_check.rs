//! The whole boot check, `verify_delivery`, on arbitrary bytes as the delivery, for the fixture's
//! device with its trust anchors, empty stored state and the fixture image in "flash". Never
//! panics; anything it accepts is the fixture's release for this device (no one but the fixed test
//! keys can sign, so nothing else may pass).
#![no_main]

use std::sync::OnceLock;

use cairn_verifier::boot::{
    DeviceIdentity, MemoryImage, StoredState, TrustAnchors, verify_delivery,
};
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::test_support::{DEVICE, Fixture, HARDWARE, Spec};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

struct Setup {
    fixture: Fixture,
    spec: Spec,
    anchors: TrustAnchors<'static>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let fixture = Fixture::new();
        let spec = fixture.spec();
        let anchors = fixture.anchors();
        Setup {
            fixture,
            spec,
            anchors,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // The fixture is built once, before the first run is measured.
    setup();
    cairn_fuzz::bounded(data.len(), || {
        let s = setup();
        let device = DeviceIdentity {
            device_id: DEVICE,
            product: s.spec.product,
            family: s.spec.family,
            hardware_revision: HARDWARE,
            current_version: s.spec.min_version,
        };
        let verdict = verify_delivery(
            data,
            &s.anchors,
            &device,
            &StoredState::default(),
            &mut MemoryImage(&s.fixture.image),
            &Software,
        );
        if let Ok(verdict) = verdict {
            assert_eq!(verdict.release_id.as_str(), s.spec.release_id);
            assert_eq!(verdict.installed.version, s.spec.version);
            assert_eq!(
                verdict.installed.image_digest,
                Software.sha256_of(&[&s.fixture.image])
            );
            assert_eq!(
                verdict.installed.delivery_digest,
                Software.sha256_of(&[data])
            );
        }
    });
});
