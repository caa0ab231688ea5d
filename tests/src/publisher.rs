//! The OS publisher most pull, serve and fixture tests start from: a signing key and an
//! archive repository holding the standard tree as version 1.0, signed, with a signed
//! summary.

use std::path::Path;

use crate::error::Result;
use crate::gpg::GpgKey;
use crate::ostree::{CommitSpec, OstreeRepo, RemoteSpec, RepoMode};
use crate::tree::{Tree, TreeOptions};

/// The publisher's collection ID.
pub const COLLECTION: &str = "org.example.Os";
/// The ref the publisher commits to.
pub const BRANCH: &str = "os/x86_64/stable";

/// A publisher: a signing key and an archive repository with collection ID [`COLLECTION`]
/// holding the standard tree as version 1.0 on [`BRANCH`], signed.
pub struct Publisher {
    pub key: GpgKey,
    pub tree: Tree,
    pub repo: OstreeRepo,
    pub commit: String,
}

impl Publisher {
    pub fn new(base: &Path, options: TreeOptions) -> Result<Self> {
        let key = GpgKey::generate(&base.join("gnupg"), "Publisher <publisher@example.org>")?;
        let tree = Tree::standard(&base.join("tree"), options)?;
        Self::with(base, key, tree)
    }

    pub fn with(base: &Path, key: GpgKey, tree: Tree) -> Result<Self> {
        let repo = OstreeRepo::init(&base.join("server"), RepoMode::Archive, Some(COLLECTION))?;
        let commit = repo.commit(
            &CommitSpec::new(BRANCH, &tree.root)
                .subject("first")
                .version("1.0")
                .sign(&key),
        )?;
        repo.update_summary(Some(&key))?;
        Ok(Self {
            key,
            tree,
            repo,
            commit,
        })
    }

    /// A system Flatpak installation's repository at `flatpak_dir/repo`: bare-user-only, with
    /// [`BRANCH`] pulled from this publisher through remote `apps` (collection [`COLLECTION`],
    /// trusting the publisher's key).
    pub fn pulled_into_system_flatpak(&self, flatpak_dir: &Path) -> Result<OstreeRepo> {
        let apps = OstreeRepo::init(&flatpak_dir.join("repo"), RepoMode::BareUserOnly, None)?;
        apps.remote_add(
            &RemoteSpec::file("apps", &self.repo.path)
                .collection_id(COLLECTION)
                .trust(&self.key),
        )?;
        apps.pull("apps", &[BRANCH])?;
        Ok(apps)
    }
}
