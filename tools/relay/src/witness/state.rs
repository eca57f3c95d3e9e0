//! The relay's own log witnessed (`[witnesses] relay_log`): the device-state bundle
//! (`GET /api/v1/state-bundle`) ends at the relay log's latest checkpoint with a quorum, so that
//! what the custodians record on the signer (`cairn rollout record-state`), and every evidence
//! pack built on it, carries k cosignatures by the witnesses devices pin. A relay that showed the
//! signer one history of device states and an auditor another would need k witnesses to cosign
//! both (docs/witness.md §1).

use cairn_vault::TransferBundle;

use crate::relay::Relay;

/// Why no device-state bundle could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateBundleError {
    /// The relay log has entries beyond `from`, but no checkpoint with a quorum beyond it: the
    /// bundle waits for the witnesses (the status names the ones missing).
    #[error(
        "the relay log is witnessed up to size {witnessed}, a bundle from {from} needs a later \
         checkpoint with a quorum: {summary}"
    )]
    NotWitnessed {
        /// The start asked for.
        from: u64,
        /// The relay log's latest checkpoint with a quorum (0: none).
        witnessed: u64,
        /// The witnesses' status, in one line.
        summary: String,
    },
    /// The relay log could not export it (a `from` that is not a checkpoint size, storage).
    #[error(transparent)]
    Log(#[from] cairn_vault::Error),
}

impl Relay {
    /// The relay's log from entry `from` as a transfer bundle (formats.md §6): up to its latest
    /// checkpoint with a quorum when the relay log is witnessed and `witnessed` is asked for, else
    /// up to its latest checkpoint.
    pub fn state_bundle(
        &self,
        from: u64,
        witnessed: bool,
    ) -> Result<TransferBundle, StateBundleError> {
        let engine = self.engine();
        let vault = engine.log().vault();
        match self.state_witnesses.as_ref().filter(|_| witnessed) {
            None => Ok(vault.export_bundle(from)?),
            Some(f) => {
                let to = f.witnessed();
                // Nothing witnessed beyond `from` while the log has more: the caller waits (a
                // `from` the log never signed is the caller's mistake, named by the export).
                if to == 0 || to < from || (to == from && vault.size() > to) {
                    drop(engine);
                    return Err(StateBundleError::NotWitnessed {
                        from,
                        witnessed: to,
                        summary: self
                            .relay_log_witness_view()
                            .map(|v| v.summary())
                            .unwrap_or_default(),
                    });
                }
                Ok(vault.export_bundle_to(from, to)?)
            }
        }
    }
}
