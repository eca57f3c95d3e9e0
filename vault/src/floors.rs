//! The `cairn-campaign-floor` lines of a checkpoint (formats.md §2.2, §5.1): per device class
//! (`<product>/<family>` of the plan's release), the campaign sequence of the newest rollout plan
//! in the tree. Logging a campaign's plan closes every earlier campaign of its class: from the next
//! checkpoint on, a device raises its floor to the new sequence and refuses the older campaigns'
//! manifests (updates and rollbacks) as stale.

use std::collections::BTreeMap;

use cairn_verifier::cose::CoseSign1;
use cairn_verifier::custody::SignedEntry;
use cairn_verifier::floor;
use cairn_verifier::rollout::RolloutPlan;
use cairn_verifier::statement::{EntryHeader, Kind, ReleaseEntry, ReleaseStatement};

use crate::error::{Error, Result};
use crate::index::Query;
use crate::vault::Vault;

/// Per class text `<product>/<family>`, the highest campaign sequence of its plans.
pub type Floors = BTreeMap<String, u64>;

impl Vault {
    /// The campaign floors of the tree made of the first `durable` entries (all indexed) and
    /// `pending` (about to be appended after them). A plan whose release is neither in the durable
    /// log nor in `pending` is an error (the signer logs a release before any plan for it); a
    /// pruned plan (retention ended) no longer counts.
    pub fn campaign_floors<E: AsRef<[u8]>>(&self, durable: u64, pending: &[E]) -> Result<Floors> {
        let mut floors = Floors::new();
        for index in self.query_indices(Query::Kind(Kind::PLAN))? {
            if index >= durable {
                continue;
            }
            let corrupt = |cause| Error::Corrupt {
                what: format!("plan entry {index} does not decode: {cause}"),
            };
            match self.entry(index) {
                Ok(entry) => self.add_plan(&mut floors, &entry, &[], &corrupt)?,
                Err(Error::Pruned { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Releases logged in the same append as a plan for them (a whole campaign replayed into
        // a new log, as the ranged-bundle tests do).
        let pending_releases: Vec<&[u8]> = pending
            .iter()
            .map(AsRef::as_ref)
            .filter(|e| EntryHeader::peek(e).is_ok_and(|h| h.kind == Kind::RELEASE))
            .collect();
        for (position, entry) in pending.iter().enumerate() {
            let entry = entry.as_ref();
            if EntryHeader::peek(entry).is_ok_and(|h| h.kind == Kind::PLAN) {
                let bad = |cause| Error::BadEntry { position, cause };
                self.add_plan(&mut floors, entry, &pending_releases, &bad)?;
            }
        }
        Ok(floors)
    }

    /// The sequence the next plan for `product`/`family` gets: one more than the newest logged.
    pub fn next_campaign_sequence(&self, product: &str, family: &str) -> Result<u64> {
        let floors = self.campaign_floors::<&[u8]>(self.size(), &[])?;
        Ok(floors
            .get(&class(product, family))
            .map_or(1, |n| n.saturating_add(1)))
    }

    fn add_plan(
        &self,
        floors: &mut Floors,
        entry: &[u8],
        pending_releases: &[&[u8]],
        bad: &dyn Fn(cairn_verifier::Error) -> Error,
    ) -> Result<()> {
        let signed = SignedEntry::decode(entry, Kind::PLAN).map_err(bad)?;
        let cose = CoseSign1::decode(signed.cose_sign1).map_err(bad)?;
        let plan = RolloutPlan::decode(cose.payload).map_err(bad)?;
        let id = plan.release_id.as_str();
        let pending = pending_releases.iter().find_map(|e| {
            let release = ReleaseEntry::decode(e).ok()?;
            let statement =
                ReleaseStatement::decode(CoseSign1::decode(release.cose_sign1).ok()?.payload)
                    .ok()?;
            (statement.release_id.as_str() == id).then(|| release.cose_sign1.to_vec())
        });
        let release = match pending {
            Some(release) => release,
            None => self.release_entry(id)?.1,
        };
        let release_cose = CoseSign1::decode(&release).map_err(bad)?;
        let statement = ReleaseStatement::decode(release_cose.payload).map_err(bad)?;
        let slot = floors
            .entry(class(statement.product.as_str(), statement.family.as_str()))
            .or_insert(0);
        *slot = (*slot).max(plan.campaign_sequence);
        Ok(())
    }
}

/// The class text a floor line names.
pub fn class(product: &str, family: &str) -> String {
    format!("{product}/{family}")
}

/// The extension lines for `floors`, in class order.
pub fn lines(floors: &Floors) -> Vec<String> {
    floors
        .iter()
        .map(|(class, n)| format!("{} {class} {n}", floor::PREFIX))
        .collect()
}
