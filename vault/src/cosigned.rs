//! Cosignatures added to a stored checkpoint (C2SP tlog-cosignature; docs/witness.md): the
//! witnesses' signature lines are appended to the note the log signed, so that deliveries,
//! transfer bundles, tiles and evidence packs built from the log afterwards carry them.
//!
//! The note text and every line already stored stay byte for byte; only lines under key names the
//! note does not carry yet are added. The vault does not know which witnesses a policy pins: the
//! caller (the signer, the relay) verifies each line against its policy first.

use std::sync::PoisonError;

use cairn_verifier::note::Checkpoint;
use rocksdb::WriteBatch;

use crate::error::{Error, Result};
use crate::layout::{CHECKPOINTS, index_key};
use crate::vault::{Vault, lock};

impl Vault {
    /// Appends the signature lines of `cosigned` that the stored checkpoint of the same size does
    /// not carry yet (by key name) to that checkpoint, durably; returns the stored note as it now
    /// is. `cosigned` must be a note over exactly the stored checkpoint's text (the one the log
    /// signed); adding nothing is not an error.
    pub fn add_cosignatures(&self, cosigned: &str) -> Result<String> {
        let malformed = |e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e));
        let theirs = Checkpoint::parse(cosigned.as_bytes()).map_err(malformed)?;
        let size = theirs.size.0;
        // One writer: no checkpoint is stored between the read and the write.
        let _writer = lock(&self.writer);
        let stored = self.checkpoint(size)?.ok_or(Error::NoCheckpoint { size })?;
        let ours = Checkpoint::parse(stored.as_bytes()).map_err(malformed)?;
        if ours.text != theirs.text {
            return Err(Error::BadBundle(format!(
                "the cosigned checkpoint of size {size} is over another note text than the one \
                 this log signed"
            )));
        }
        let mut merged = stored.clone();
        let mut names: Vec<&str> = ours
            .signature_lines()
            .filter_map(|l| l.ok().map(|l| l.name))
            .collect();
        for (raw, line) in theirs
            .signatures
            .split_inclusive('\n')
            .zip(theirs.signature_lines())
        {
            let line = line.map_err(malformed)?;
            if !names.contains(&line.name) {
                names.push(line.name);
                merged.push_str(raw);
            }
        }
        if merged == stored {
            return Ok(stored);
        }
        // The merged note must still parse (at most `MAX_SIGNATURES` lines, `MAX_NOTE_LEN` bytes).
        Checkpoint::parse(merged.as_bytes()).map_err(malformed)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CHECKPOINTS)?, index_key(size), merged.as_bytes());
        self.write_synced(batch)?;
        self.checkpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&size);
        Ok(merged)
    }
}
