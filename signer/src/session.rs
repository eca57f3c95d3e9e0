//! Signing sessions (docs/ceremony.md): custodians unlock the token with their shares, and
//! everything the session signs (releases, key rotations and revocations) is logged after its
//! session record under a new log-key checkpoint; and the verification of a release entry.

use std::path::Path;

use cairn_verifier::cose::{CoseSign1, ReleaseKey};
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::{
    CeremonyId, KeyAction, KeyRole, KeyStatement, SessionRecord, SignedEntry,
};
use cairn_verifier::statement::{Kind, ReleaseEntry, ReleaseStatement};
use cairn_verifier::types::{Hash, SecurityEpoch, TextList, UnixTime, Version};

use crate::appliance::{
    Appliance, KeyState, check_id, check_name, log_key_of, sign_cose, stream_sha256, write_new,
    write_state,
};
use crate::certs;
use crate::error::{Error, Result, io};
use crate::hsm::{HsmKey, Module, Token};
use crate::shares::{self, Expected, Passphrase, ShareFile};
use crate::uri::Pkcs11Uri;

/// The inputs of a release statement other than the image (whose digest and size are measured).
#[derive(Debug, Clone)]
pub struct ReleaseInput {
    /// Release id, unique in the log.
    pub release_id: String,
    /// Product.
    pub product: String,
    /// Device family.
    pub family: String,
    /// Hardware revisions.
    pub hardware_revisions: Vec<String>,
    /// Version.
    pub version: Version,
    /// Anti-rollback epoch.
    pub security_epoch: u64,
    /// End of the support period.
    pub support_until: UnixTime,
    /// Advisory and CVE references.
    pub advisories: Vec<String>,
    /// Artifact file name (default: the image's file name).
    pub artifact: Option<String>,
}

/// A signed and logged release.
#[derive(Debug, Clone)]
pub struct SignedRelease {
    /// Index of the release entry.
    pub index: u64,
    /// Index of the session record logged with it.
    pub session_index: u64,
    /// The COSE_Sign1.
    pub cose_sign1: Vec<u8>,
    /// SHA-256 of the image.
    pub image_digest: Hash,
    /// Image length.
    pub image_size: u64,
    /// The new checkpoint.
    pub checkpoint: String,
}

/// A key statement that was signed and logged.
#[derive(Debug, Clone)]
pub struct SignedKeyStatement {
    /// Index of the statement entry.
    pub index: u64,
    /// The new key's URI (rotation).
    pub new_uri: Option<String>,
    /// The new certificate's fingerprint (rotation).
    pub new_fingerprint: Option<String>,
    /// The new checkpoint.
    pub checkpoint: String,
}

impl Appliance {
    fn expected<'a>(&'a self, ceremony: &'a CeremonyId, check: &'a [u8; 32]) -> Expected<'a> {
        Expected {
            ceremony,
            threshold: self.state.threshold,
            custodians: &self.state.custodians,
            check_value: check,
        }
    }

    /// Checks presented share files before passphrases are asked for (ceremony, duplicates,
    /// count). No secret is involved and the token is not touched.
    pub fn check_shares(&self, files: &[ShareFile]) -> Result<()> {
        let ceremony = self.state.ceremony_id()?;
        let check = self.state.pin_check()?;
        shares::check_presented(&self.expected(&ceremony, &check), files)
    }

    /// Opens a signing session: rebuilds the PIN from the shares (every check before any login),
    /// then logs in to the token.
    pub fn unlock(
        &self,
        module: &Module,
        shares: &[(ShareFile, Passphrase)],
        now: UnixTime,
    ) -> Result<Session<'_>> {
        // signer.json is not signed: it must describe the root-signed ceremony record.
        self.verify_ceremony(None)?;
        let ceremony = self.state.ceremony_id()?;
        let check = self.state.pin_check()?;
        let master = shares::rebuild(&self.expected(&ceremony, &check), shares)?;
        let token = module.login(&self.state.token, &master.user_pin(&ceremony))?;
        drop(master);
        crate::interrupted::reached("unlocked");
        let mut custodians: Vec<(u8, String)> = shares
            .iter()
            .map(|(f, _)| (f.index, f.custodian.clone()))
            .collect();
        custodians.sort();
        Ok(Session {
            appliance: self,
            token,
            ceremony,
            custodians: custodians.into_iter().map(|(_, c)| c).collect(),
            opened_at: now,
        })
    }
}

/// An unlocked token and the custodians who unlocked it. Everything it signs is logged with its
/// session record.
#[derive(Debug)]
pub struct Session<'a> {
    appliance: &'a Appliance,
    token: Token,
    ceremony: CeremonyId,
    custodians: Vec<String>,
    opened_at: UnixTime,
}

impl Session<'_> {
    /// The appliance the session is on.
    pub fn appliance(&self) -> &Appliance {
        self.appliance
    }

    /// A COSE_Sign1 of `payload` by the current `role` key, verified before it is returned.
    pub(crate) fn sign_with(&self, role: KeyRole, payload: &[u8]) -> Result<Vec<u8>> {
        sign_cose(payload, &self.key(role)?)
    }

    /// Logs `entries` after the session record, under one new checkpoint.
    pub(crate) fn log_entries(
        &self,
        purpose: &str,
        entries: Vec<Vec<u8>>,
    ) -> Result<(u64, String)> {
        self.log(purpose, entries)
    }

    /// The custodians present, in share order.
    pub fn custodians(&self) -> &[String] {
        &self.custodians
    }

    /// The token (tests inspect it).
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The current `role` key, refused if a key statement revoked it.
    pub fn key(&self, role: KeyRole) -> Result<HsmKey<'_>> {
        let uri: Pkcs11Uri = self.appliance.state.key(role).uri.parse()?;
        let key = self.token.key_at(&uri)?;
        let certified = certs::verifier_key(&self.appliance.certificate(role)?, role.name())?;
        if certified.spki_der() != key.public_key().spki_der() {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: format!(
                    "its public key is not the one {} certifies",
                    self.appliance.state.key(role).certificate
                ),
            });
        }
        if let Some(index) = self.appliance.revocation_of(&key.key_id())? {
            return Err(Error::Revoked {
                role: role.name(),
                key_id: hex::encode(key.key_id()),
                index,
            });
        }
        Ok(key)
    }

    fn session_record(&self, purpose: &str) -> Result<Vec<u8>> {
        let names: Vec<&str> = self.custodians.iter().map(String::as_str).collect();
        Ok(SessionRecord {
            ceremony_id: self.ceremony,
            opened_at: self.opened_at,
            custodians: TextList::Slice(&names),
            purpose: check_name("session purpose", purpose)?,
        }
        .to_cbor())
    }

    /// Appends `entries` after this session's record, under a new log-key checkpoint; nothing
    /// is written if any signature fails. Returns the first index (the session record's).
    fn log(&self, purpose: &str, entries: Vec<Vec<u8>>) -> Result<(u64, String)> {
        self.log_with(&self.key(KeyRole::Log)?, purpose, entries)
    }

    fn log_with(
        &self,
        log: &HsmKey<'_>,
        purpose: &str,
        entries: Vec<Vec<u8>>,
    ) -> Result<(u64, String)> {
        let log_key = log_key_of(&self.appliance.state.origin, log)?;
        let mut batch = vec![self.session_record(purpose)?];
        batch.extend(entries);
        let (range, note) = self
            .appliance
            .vault
            .append_signed(&batch, &log_key, log)
            .map_err(|e| match e {
                // The HSM error inside the signing failure names the PKCS#11 call.
                cairn_vault::Error::Signing(_) => log.last_error().unwrap_or(Error::Vault(e)),
                e => Error::Vault(e),
            })?;
        crate::interrupted::reached("logged");
        Ok((range.start, note))
    }

    /// `cairn release sign`: hashes the image as it streams, builds the release statement, signs
    /// it as COSE_Sign1 with the release key, and logs it with the session record under a new
    /// checkpoint. The HSM failing anywhere leaves the log unchanged.
    pub fn sign_release(
        &self,
        image: &Path,
        input: &ReleaseInput,
        issued_at: UnixTime,
    ) -> Result<SignedRelease> {
        let release = self.key(KeyRole::Release)?;
        let log = self.key(KeyRole::Log)?;
        self.sign_release_with(&release, &log, image, input, issued_at)
    }

    /// [`Session::sign_release`] with keys the caller already looked up (the tests use it to
    /// make the token fail between the two signatures).
    pub fn sign_release_with(
        &self,
        release: &HsmKey<'_>,
        log: &HsmKey<'_>,
        image: &Path,
        input: &ReleaseInput,
        issued_at: UnixTime,
    ) -> Result<SignedRelease> {
        self.sign_measured(release, log, image, input, issued_at, || {
            let mut f = std::fs::File::open(image).map_err(io("opening image", image))?;
            let (digest, size) = stream_sha256(&mut f, image)?;
            Ok(crate::mcuboot::Measured {
                digest,
                size,
                mcuboot_hash: None,
            })
        })
    }

    /// Checks `input`, then has `measure` produce the image (its digest, size and, for an MCUboot
    /// image, its SHA256 TLV), then signs and logs the release statement. `image` names the
    /// artifact unless `input` does.
    pub(crate) fn sign_measured(
        &self,
        release: &HsmKey<'_>,
        log: &HsmKey<'_>,
        image: &Path,
        input: &ReleaseInput,
        issued_at: UnixTime,
        measure: impl FnOnce() -> Result<crate::mcuboot::Measured>,
    ) -> Result<SignedRelease> {
        let artifact_name = match &input.artifact {
            Some(a) => a.clone(),
            None => image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let hw: Vec<&str> = input
            .hardware_revisions
            .iter()
            .map(String::as_str)
            .collect();
        let advisories: Vec<&str> = input.advisories.iter().map(String::as_str).collect();
        if hw.is_empty() || hw.len() > 32 {
            return Err(Error::Invalid(format!(
                "{} hardware revisions: a release names 1 to 32",
                hw.len()
            )));
        }
        for h in &hw {
            check_id("hardware revision", h)?;
        }
        if advisories.len() > 64 {
            return Err(Error::Invalid(format!(
                "{} advisories: at most 64",
                advisories.len()
            )));
        }
        for a in &advisories {
            check_name("advisory", a)?;
        }
        if input.support_until.0 <= issued_at.0 {
            return Err(Error::Invalid(format!(
                "support period end {} is not after the release time {}",
                input.support_until.0, issued_at.0
            )));
        }
        let release_id = check_id("release id", &input.release_id)?;
        let product = check_name("product", &input.product)?;
        let family = check_name("family", &input.family)?;
        let artifact = check_id("artifact file name", &artifact_name)?;
        let crate::mcuboot::Measured {
            digest: image_digest,
            size: image_size,
            mcuboot_hash,
        } = measure()?;
        let statement = ReleaseStatement {
            release_id,
            product,
            family,
            hardware_revisions: TextList::Slice(&hw),
            version: input.version,
            security_epoch: SecurityEpoch(input.security_epoch),
            image_digest,
            image_size,
            support_until: input.support_until,
            advisories: TextList::Slice(&advisories),
            issued_at,
            artifact,
            mcuboot_hash,
        };
        let cose = sign_cose(&statement.to_cbor(), release)?;
        crate::interrupted::reached("signed");
        let entry = ReleaseEntry { cose_sign1: &cose }.to_cbor();
        let (first, checkpoint) = self.log_with(
            log,
            &format!("release sign {}", input.release_id),
            vec![entry],
        )?;
        Ok(SignedRelease {
            index: first + 1,
            session_index: first,
            cose_sign1: cose,
            image_digest,
            image_size,
            checkpoint,
        })
    }

    /// Rotates the release key: a new key (next generation) on the token, its certificate from
    /// the root, and a root-signed rotation statement in the log. The log key is pinned by the log
    /// itself and is not rotated here (a new log key means a new log).
    pub fn rotate_release_key(&self, reason: &str, now: UnixTime) -> Result<SignedKeyStatement> {
        let old_state = self.appliance.state.keys.release.clone();
        let old = self.key(KeyRole::Release)?;
        let root = self.key(KeyRole::Root)?;
        let generation = old_state
            .generation
            .checked_add(1)
            .ok_or_else(|| Error::Invalid("the release key was rotated 255 times".into()))?;
        let reason_name = check_name("reason", reason)?;
        // A rotation of this key killed part way (docs/ceremony.md, "An interrupted signing
        // session"): completed if it was logged, its key made again if not.
        if let Some(done) = self.earlier_rotation(&old, generation)? {
            return Ok(done);
        }
        let root_cert = self.appliance.certificate(KeyRole::Root)?;
        let new = self.token.generate_key(KeyRole::Release, generation)?;
        crate::interrupted::reached("generated");
        let cert = certs::key_certificate(
            &root,
            &root_cert,
            &new,
            KeyRole::Release,
            &self.appliance.state.organization,
            now,
        )?;
        let der = certs::to_der(&cert)?;
        let statement = KeyStatement {
            ceremony_id: self.ceremony,
            action: KeyAction::Rotate,
            role: KeyRole::Release,
            key_id: old.key_id(),
            new_certificate: &der,
            reason: reason_name,
            issued_at: now,
        };
        let cose = sign_cose(&statement.to_cbor(), &root)?;
        crate::interrupted::reached("signed");
        let entry = SignedEntry {
            kind: Kind::KEY,
            cose_sign1: &cose,
        }
        .to_cbor();
        let (first, checkpoint) = match self.log("key rotate release", vec![entry]) {
            Ok(done) => done,
            Err(e) => {
                // Not logged, so not a key: remove it, so a retry can generate it again.
                let _ = self.token.destroy_key(KeyRole::Release, generation);
                return Err(e);
            }
        };
        let new_uri = new.uri().to_owned();
        drop(new);
        self.adopt_rotated(first + 1, &new_uri, generation, &cert, checkpoint)
    }

    /// What an earlier `key rotate` of `old` left: `Some` (completed now) if the log holds its
    /// rotation statement; `None` if it does not, after destroying a key of `generation` that
    /// run generated (never logged, so never a key) so that this one makes it again.
    fn earlier_rotation(
        &self,
        old: &HsmKey<'_>,
        generation: u8,
    ) -> Result<Option<SignedKeyStatement>> {
        let vault = &self.appliance.vault;
        let mut logged = None;
        for index in vault.query_indices(cairn_vault::Query::Kind(Kind::KEY))? {
            let entry = vault.entry(index)?;
            if let cairn_verifier::statement::Statement::Key { statement, .. } =
                cairn_verifier::statement::Statement::decode(&entry)?
                && statement.action == KeyAction::Rotate
                && statement.key_id == old.key_id()
            {
                logged = Some((index, statement.new_certificate.to_vec()));
            }
        }
        let Some((index, der)) = logged else {
            self.token.destroy_key(KeyRole::Release, generation)?;
            return Ok(None);
        };
        let cert = certs::from_der(&der, "the logged rotation's certificate")?;
        let new = self.token.key(KeyRole::Release, generation)?;
        if certs::verifier_key(&cert, "release")?.spki_der() != new.public_key().spki_der() {
            return Err(Error::KeyUnusable {
                uri: new.uri().into(),
                why: format!(
                    "the rotation logged at index {index} certifies another key: incident"
                ),
            });
        }
        let uri = new.uri().to_owned();
        drop(new);
        let checkpoint = vault.latest_checkpoint()?.unwrap_or_default();
        self.adopt_rotated(index, &uri, generation, &cert, checkpoint)
            .map(Some)
    }

    /// The rotation logged at `index`: the new certificate written (or found, the same) and
    /// `signer.json` naming the new key.
    fn adopt_rotated(
        &self,
        index: u64,
        uri: &str,
        generation: u8,
        cert: &x509_cert::Certificate,
        checkpoint: String,
    ) -> Result<SignedKeyStatement> {
        let der = certs::to_der(cert)?;
        let pem = certs::to_pem(cert)?;
        let file = format!("certs/release-{generation}.pem");
        let path = self.appliance.home.join(&file);
        match std::fs::read(&path) {
            Ok(found) if found == pem.as_bytes() => {}
            // Killed while writing it: a part of it, replaced below.
            Ok(found) if pem.as_bytes().starts_with(&found) => {
                std::fs::remove_file(&path).map_err(io("removing the partial", &path))?;
                write_new(&path, pem.as_bytes())?;
            }
            Ok(_) => {
                return Err(Error::Home {
                    path,
                    why: "holds another certificate than the logged rotation's: incident".into(),
                });
            }
            Err(_) => write_new(&path, pem.as_bytes())?,
        }
        crate::interrupted::reached("certificate");
        let mut state = self.appliance.state.clone();
        state.keys.release = KeyState {
            uri: uri.into(),
            generation,
            certificate: file,
            fingerprint: certs::fingerprint_text(&der),
        };
        write_state(&self.appliance.home, &state)?;
        crate::interrupted::reached("state");
        Ok(SignedKeyStatement {
            index,
            new_uri: Some(uri.into()),
            new_fingerprint: Some(certs::fingerprint_text(&der)),
            checkpoint,
        })
    }

    /// Revokes the current `role` key (release or log) with a root-signed statement; the
    /// appliance refuses to sign with it from then on.
    pub fn revoke(&self, role: KeyRole, reason: &str, now: UnixTime) -> Result<SignedKeyStatement> {
        if role == KeyRole::Root {
            return Err(Error::Invalid(
                "the root key is not revoked by a statement it signs itself; retire it with a new ceremony".into(),
            ));
        }
        let key = self.key(role)?;
        let root = self.key(KeyRole::Root)?;
        let statement = KeyStatement {
            ceremony_id: self.ceremony,
            action: KeyAction::Revoke,
            role,
            key_id: key.key_id(),
            new_certificate: &[],
            reason: check_name("reason", reason)?,
            issued_at: now,
        };
        let cose = sign_cose(&statement.to_cbor(), &root)?;
        let entry = SignedEntry {
            kind: Kind::KEY,
            cose_sign1: &cose,
        }
        .to_cbor();
        // Revoking the log key: this is the last checkpoint it signs.
        let (first, checkpoint) = self.log(&format!("key revoke {}", role.name()), vec![entry])?;
        Ok(SignedKeyStatement {
            index: first + 1,
            new_uri: None,
            new_fingerprint: None,
            checkpoint,
        })
    }
}

/// Verifies a release entry: its COSE_Sign1 by the key `release_cert` certifies, the certificate
/// issued by `root_cert`, and (if given) the image's digest and size. Returns the statement's
/// release id and the image digest.
pub fn verify_release_entry(
    entry: &[u8],
    root_cert: &x509_cert::Certificate,
    release_cert: &x509_cert::Certificate,
    image: Option<&Path>,
) -> Result<(String, Hash)> {
    certs::verify_issued_by(release_cert, root_cert, "release")?;
    let release = ReleaseEntry::decode(entry)?;
    let key = ReleaseKey::new(certs::verifier_key(release_cert, "release")?, &Software);
    let cose = CoseSign1::decode(release.cose_sign1)?;
    cose.verify(&key, &Software)
        .map_err(|e| Error::Verification {
            what: "release statement".into(),
            why: e.to_string(),
        })?;
    let statement = ReleaseStatement::decode(cose.payload)?;
    if let (Some(path), Some(_)) = (image, statement.mcuboot_hash) {
        crate::mcuboot::check_file(path, &statement, &key)?;
    } else if let Some(path) = image {
        let mut f = std::fs::File::open(path).map_err(io("opening image", path))?;
        let (digest, size) = stream_sha256(&mut f, path)?;
        if digest != statement.image_digest || size != statement.image_size {
            return Err(Error::Verification {
                what: format!("image {}", path.display()),
                why: format!(
                    "SHA-256 {} ({size} bytes) is not the signed {} ({} bytes)",
                    hex::encode(digest),
                    hex::encode(statement.image_digest),
                    statement.image_size
                ),
            });
        }
    }
    Ok((statement.release_id.as_str().into(), statement.image_digest))
}

/// Releases in MCUboot format (the image side is [`crate::mcuboot`]).
impl Session<'_> {
    /// Signs `image` as an MCUboot release and logs it (module documentation). Returns the signed
    /// release; for raw firmware the image is at `out`, for a finished image it is `image`.
    pub fn sign_mcuboot_release(
        &self,
        image: &Path,
        input: &ReleaseInput,
        source: &crate::mcuboot::McubootSource,
        issued_at: UnixTime,
    ) -> Result<SignedRelease> {
        let release = self.key(KeyRole::Release)?;
        let log = self.key(KeyRole::Log)?;
        self.sign_mcuboot_release_with(&release, &log, image, input, source, issued_at)
    }

    /// [`Session::sign_mcuboot_release`] with keys the caller already looked up.
    pub fn sign_mcuboot_release_with(
        &self,
        release: &HsmKey<'_>,
        log: &HsmKey<'_>,
        image: &Path,
        input: &ReleaseInput,
        source: &crate::mcuboot::McubootSource,
        issued_at: UnixTime,
    ) -> Result<SignedRelease> {
        let (layout, out) = match source {
            crate::mcuboot::McubootSource::Finished => {
                let key = ReleaseKey::new(release.public_key(), &Software);
                return self.sign_measured(release, log, image, input, issued_at, || {
                    crate::mcuboot::check_finished(image, input.version, input.security_epoch, &key)
                });
            }
            crate::mcuboot::McubootSource::Firmware { layout, out } => (layout, out),
        };
        if crate::mcuboot::is_mcuboot_image(image)? {
            return Err(Error::Invalid(format!(
                "{} already is an MCUboot image (it starts with the image magic): sign it as a \
                 finished image, or give the raw firmware",
                image.display()
            )));
        }
        let version =
            cairn_verifier::mcuboot::ImageVersion::of_release(input.version).ok_or_else(|| {
                Error::Invalid(format!(
                    "version {} does not fit MCUboot's major.minor.revision (8, 8 and 16 bits)",
                    input.version
                ))
            })?;
        let counter = u32::try_from(input.security_epoch).map_err(|_| {
            Error::Invalid(format!(
                "security epoch {} does not fit MCUboot's 32-bit security counter",
                input.security_epoch
            ))
        })?;
        if out.exists() {
            return Err(Error::Invalid(format!(
                "{} exists; the signed image is written to a new file",
                out.display()
            )));
        }
        // Staged under a name of its own beside `out`, synced, until the release is logged: a
        // session killed before the log write leaves it unlogged (the next one removes it), one
        // killed after finds it and moves it to `out` (`Appliance::earlier_release`).
        let staged = crate::resume::staged_path(out);
        let mut file = std::fs::File::create(&staged).map_err(io("creating", &staged))?;
        let signed = self.sign_measured(release, log, out, input, issued_at, || {
            let measured =
                crate::mcuboot::build(image, layout, version, counter, release, &mut file, out)?;
            file.sync_all().map_err(io("syncing", &staged))?;
            Ok(measured)
        });
        drop(file);
        let signed = match signed {
            Ok(s) => s,
            Err(e) => {
                // Not acknowledged by the log. A failed log write may still have made the batch
                // durable (docs/log.md, "Faults"): then the staged image stays, for the next run
                // to move if the reopened log holds the release, or remove if it does not.
                // Otherwise it goes: an image the log does not hold is never handed out.
                if !matches!(e, Error::Vault(_)) {
                    let _ = std::fs::remove_file(&staged);
                }
                return Err(e);
            }
        };
        // Logged: now the image may exist under its name.
        crate::resume::move_staged(&staged, out)?;
        crate::interrupted::reached("output");
        Ok(signed)
    }
}
