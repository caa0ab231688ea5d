//! What a Flatpak commit says about itself: the runtime an app needs (`xa.metadata`) and the
//! parts of a Flatpak ref.

use crate::object::Commit;
use crate::repo::KeyFile;

/// Commit metadata key holding the app's or runtime's `metadata` keyfile.
pub const XA_METADATA_KEY: &str = "xa.metadata";
/// Commit metadata key with the total archived size of the commit's objects (big-endian `t`).
pub const XA_DOWNLOAD_SIZE_KEY: &str = "xa.download-size";

/// The parts of `app/ID/ARCH/BRANCH` or `runtime/ID/ARCH/BRANCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatpakRef<'a> {
    pub is_app: bool,
    pub id: &'a str,
    pub arch: &'a str,
    pub branch: &'a str,
}

impl<'a> FlatpakRef<'a> {
    pub fn parse(ref_name: &'a str) -> Option<Self> {
        let mut parts = ref_name.split('/');
        let kind = parts.next()?;
        let (id, arch, branch) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [id, arch, branch].iter().any(|p| p.is_empty()) {
            return None;
        }
        let is_app = match kind {
            "app" => true,
            "runtime" => false,
            _ => return None,
        };
        Some(Self {
            is_app,
            id,
            arch,
            branch,
        })
    }
}

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
    fn parses_refs() {
        let parsed = FlatpakRef::parse("app/org.example.App/x86_64/stable").expect("app ref");
        assert!(parsed.is_app);
        assert_eq!(
            (parsed.id, parsed.arch, parsed.branch),
            ("org.example.App", "x86_64", "stable")
        );
        assert!(
            !FlatpakRef::parse("runtime/org.example.Platform/aarch64/23.08")
                .expect("runtime ref")
                .is_app
        );
        for bad in [
            "exampleos/x86_64/stable",
            "app/a/b",
            "app/a/b/c/d",
            "app//x/y",
        ] {
            assert_eq!(FlatpakRef::parse(bad), None, "{bad}");
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
