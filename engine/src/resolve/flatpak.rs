//! What a Flatpak commit says about itself: the runtime an app needs (`xa.metadata`) and the
//! parts of a Flatpak ref.

use crate::object::{Commit, FlatpakRef};
use crate::repo::KeyFile;

/// Commit metadata key holding the app's or runtime's `metadata` keyfile.
pub const XA_METADATA_KEY: &str = "xa.metadata";
/// Commit metadata key with the total archived size of the commit's objects (big-endian `t`).
pub const XA_DOWNLOAD_SIZE_KEY: &str = "xa.download-size";

/// The runtime ref (`runtime/ID/ARCH/BRANCH`) an app commit needs, from `[Application]
/// runtime=ID/ARCH/BRANCH` in its `xa.metadata`. None for runtimes and commits without one.
pub fn needed_runtime(commit: &Commit) -> Option<String> {
    let text = commit.metadata.get_str(XA_METADATA_KEY)?;
    let keyfile = KeyFile::parse(text).ok()?;
    let runtime = keyfile.get("Application", "runtime").ok()??;
    let full = format!("runtime/{}", runtime.trim());
    FlatpakRef::parse(&full)?;
    crate::object::validate_ref_name(&full).ok()?;
    Some(full)
}

/// `xa.download-size`: what Flatpak recorded as the commit's download size.
pub fn recorded_download_size(commit: &Commit) -> Option<u64> {
    commit
        .metadata
        .get_u64_big_endian(XA_DOWNLOAD_SIZE_KEY)
        .filter(|size| *size > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Checksum, Metadata, MetadataValue};

    fn commit_with(metadata: Metadata) -> Commit {
        Commit {
            metadata,
            parent: None,
            related: vec![],
            subject: String::new(),
            body: String::new(),
            timestamp: 0,
            root_tree: Checksum::from_array([1; 32]),
            root_meta: Checksum::from_array([2; 32]),
        }
    }

    #[test]
    fn reads_the_runtime_and_download_size() {
        let mut metadata = Metadata::new();
        metadata
            .insert_str(
                XA_METADATA_KEY,
                "[Application]\nname=org.example.App\nruntime=org.example.Platform/x86_64/stable\n",
            )
            .expect("metadata");
        metadata
            .insert(XA_DOWNLOAD_SIZE_KEY, MetadataValue::u64_big_endian(4096))
            .expect("size");
        let commit = commit_with(metadata);
        assert_eq!(
            needed_runtime(&commit).as_deref(),
            Some("runtime/org.example.Platform/x86_64/stable")
        );
        assert_eq!(recorded_download_size(&commit), Some(4096));

        let mut runtime = Metadata::new();
        runtime
            .insert_str(XA_METADATA_KEY, "[Runtime]\nname=org.example.Platform\n")
            .expect("metadata");
        assert_eq!(needed_runtime(&commit_with(runtime)), None);
        let mut bad = Metadata::new();
        bad.insert_str(XA_METADATA_KEY, "[Application]\nruntime=../../x\n")
            .expect("metadata");
        assert_eq!(needed_runtime(&commit_with(bad)), None);
    }
}
