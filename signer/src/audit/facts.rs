//! What pack verification keeps of each entry once it is decoded (docs/scale.md): the manifests'
//! facts in place, every other statement whole.
//!
//! A table entry with a whole [`Statement`] was 360 bytes (304 the statement), 1.46 GB at 1 M
//! devices (4.06 M entries); with a [`Fact`] holding a device event whole (120 bytes) it was 176
//! bytes; now that the relay's device events become the summary's facts in the decoding pass
//! (`relay_log.rs`) and the table borrows the pack's leaf hashes and entries, a [`Fact`] is a
//! manifest's 48 bytes (with its `Option`) and an entry 64. On the appliance's machine fresh
//! memory is most of what verification costs: the kernel clearing each new page was 46 % of the
//! step's profile at 1 M devices. Manifests, two a device, keep the four fields the plan's batch
//! is checked with; the few other statements are boxed.

use cairn_verifier::statement::{Kind, Purpose, Statement};
use cairn_verifier::types::Id;

/// One decoded entry, as the later steps need it.
#[derive(Debug)]
pub(super) enum Fact<'p> {
    /// A device manifest.
    Manifest(ManifestFact<'p>),
    /// A device event of the relay's log, whose facts were taken when it was decoded (a device
    /// event in the signer's log is kept whole, as [`Fact::Other`]).
    DeviceEvent,
    /// Any other statement, whole.
    Other(Box<Statement<'p>>),
}

/// What the plan's batch is checked with (docs/audit.md step 5): the rest of a manifest is
/// checked when it is decoded.
#[derive(Debug, Clone, Copy)]
pub(super) struct ManifestFact<'p> {
    pub(super) device_id: Id<'p>,
    pub(super) campaign: Id<'p>,
    pub(super) purpose: Purpose,
    pub(super) campaign_sequence: u64,
}

impl<'p> From<Statement<'p>> for Fact<'p> {
    fn from(statement: Statement<'p>) -> Self {
        match statement {
            Statement::Manifest(m) => Fact::Manifest(ManifestFact {
                device_id: m.device_id,
                campaign: m.campaign,
                purpose: m.purpose,
                campaign_sequence: m.campaign_sequence,
            }),
            other => Fact::Other(Box::new(other)),
        }
    }
}

impl<'p> Fact<'p> {
    /// The entry's kind.
    pub(super) fn kind(&self) -> Kind {
        match self {
            Fact::Manifest(_) => Kind::MANIFEST,
            Fact::DeviceEvent => Kind::DEVICE_EVENT,
            Fact::Other(s) => s.kind(),
        }
    }

    /// The statement, if it is kept whole (neither a manifest nor a relay's device event).
    pub(super) fn statement(&self) -> Option<&Statement<'p>> {
        match self {
            Fact::Other(s) => Some(s),
            Fact::Manifest(_) | Fact::DeviceEvent => None,
        }
    }
}

/// The statement of a decoded entry kept whole, if it is one ([`Fact::statement`]).
pub(super) fn whole<'a, 'p>(fact: Option<&'a Fact<'p>>) -> Option<&'a Statement<'p>> {
    fact.and_then(Fact::statement)
}

#[cfg(test)]
mod tests {
    use super::Fact;

    #[test]
    fn a_fact_is_less_than_half_a_whole_statement() {
        let (fact, statement) = (
            size_of::<Option<Fact<'_>>>(),
            size_of::<Option<cairn_verifier::statement::Statement<'_>>>(),
        );
        println!("fact {fact} bytes, whole statement {statement} bytes");
        assert!(
            fact * 2 < statement,
            "fact {fact} bytes, statement {statement}"
        );
    }
}
