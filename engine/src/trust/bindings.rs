//! Collection and ref bindings (libostree's `_ostree_repo_verify_bindings`) and finding the
//! remote that owns a collection.

use std::path::Path;

use super::error::TrustError;
use super::metadata::CommitFacts;
use crate::object::Checksum;

/// A commit's binding metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bindings<'a> {
    /// `ostree.ref-binding`, None when absent.
    pub ref_binding: Option<&'a [String]>,
    /// `ostree.collection-binding`, None when absent.
    pub collection_binding: Option<&'a str>,
}

impl CommitFacts {
    /// The commit's binding metadata.
    pub fn bindings(&self) -> Bindings<'_> {
        Bindings {
            ref_binding: self.ref_binding.as_deref(),
            collection_binding: self.collection_binding.as_deref(),
        }
    }
}

/// Checks a commit's bindings against the remote it is pulled for, exactly as libostree does:
/// - a ref binding, when present, must list `ref_name` (when pulling by ref);
/// - a remote with a collection ID requires a ref binding and a collection binding equal to
///   its collection ID.
pub fn check_bindings(
    commit: &Checksum,
    bindings: Bindings<'_>,
    remote: &str,
    remote_collection_id: Option<&str>,
    ref_name: Option<&str>,
    source: &str,
) -> Result<(), TrustError> {
    match bindings.ref_binding {
        None if remote_collection_id.is_some() => {
            return Err(TrustError::RefBinding {
                commit: *commit,
                location: source.into(),
                remote: remote.into(),
                ref_name: ref_name.map(str::to_owned),
                bound: None,
            })
        }
        None => return Ok(()),
        Some(refs) => {
            if let Some(ref_name) = ref_name {
                if !refs.iter().any(|bound| bound == ref_name) {
                    return Err(TrustError::RefBinding {
                        commit: *commit,
                        location: source.into(),
                        remote: remote.into(),
                        ref_name: Some(ref_name.to_owned()),
                        bound: Some(refs.to_vec()),
                    });
                }
            }
        }
    }
    if let Some(expected) = remote_collection_id {
        if bindings.collection_binding != Some(expected) {
            return Err(TrustError::CollectionBinding {
                commit: *commit,
                location: source.into(),
                remote: remote.into(),
                expected: expected.to_owned(),
                found: bindings.collection_binding.map(str::to_owned),
            });
        }
    }
    Ok(())
}

/// The first remote (in the order given) whose collection ID is `collection_id`, or the error
/// telling the person to add one. `remotes` are `(name, collection ID)` pairs of the
/// repository at `repo`.
pub fn find_remote_for_collection<'a>(
    repo: &Path,
    remotes: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    collection_id: &str,
) -> Result<&'a str, TrustError> {
    remotes
        .into_iter()
        .find(|(_, id)| *id == Some(collection_id))
        .map(|(name, _)| name)
        .ok_or_else(|| TrustError::UnknownCollection {
            repo: repo.to_owned(),
            collection_id: collection_id.to_owned(),
        })
}

/// A remote's name and collection ID, for [`find_remote_for_collection`].
pub type RemoteCollection<'a> = (&'a str, Option<&'a str>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ProblemKind;

    const COMMIT: Checksum = Checksum::from_array([0xab; 32]);

    fn refs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bindings_follow_libostree() {
        let bound = refs(&["os/x86_64/stable"]);
        let good = Bindings {
            ref_binding: Some(&bound),
            collection_binding: Some("org.example.Os"),
        };
        let check = |b, cid, r| check_bindings(&COMMIT, b, "origin", cid, r, "/media/stick");
        assert!(check(good, Some("org.example.Os"), Some("os/x86_64/stable")).is_ok());
        assert!(check(good, None, Some("os/x86_64/stable")).is_ok());
        assert!(check(good, Some("org.example.Os"), None).is_ok());
        assert!(check(Bindings::default(), None, Some("anything")).is_ok());

        let wrong_ref = check(good, None, Some("os/x86_64/devel")).expect_err("ref not bound");
        assert_eq!(wrong_ref.problem_kind(), ProblemKind::BindingMismatch);
        assert!(wrong_ref
            .to_string()
            .contains("is bound to os/x86_64/stable"));

        let other = check(good, Some("org.other.Os"), Some("os/x86_64/stable"))
            .expect_err("collection differs");
        assert!(other
            .to_string()
            .contains("belongs to collection org.example.Os"));

        let unbound = check(
            Bindings::default(),
            Some("org.example.Os"),
            Some("os/x86_64/stable"),
        )
        .expect_err("a remote with a collection ID requires bindings");
        assert!(matches!(
            unbound,
            TrustError::RefBinding { bound: None, .. }
        ));
        let no_collection = Bindings {
            ref_binding: Some(&bound),
            collection_binding: None,
        };
        assert!(matches!(
            check(
                no_collection,
                Some("org.example.Os"),
                Some("os/x86_64/stable")
            ),
            Err(TrustError::CollectionBinding { found: None, .. })
        ));
    }

    #[test]
    fn finds_the_remote_owning_a_collection() {
        let remotes = [("fedora", None), ("flathub", Some("org.flathub.Stable"))];
        let repo = Path::new("/var/lib/flatpak/repo");
        assert_eq!(
            find_remote_for_collection(repo, remotes, "org.flathub.Stable").expect("found"),
            "flathub"
        );
        let err = find_remote_for_collection(repo, remotes, "org.example.Other")
            .expect_err("nobody owns it");
        assert_eq!(
            err.to_string(),
            "no remote in /var/lib/flatpak/repo has collection ID org.example.Other: add the \
             remote first"
        );
        assert_eq!(err.problem_kind(), ProblemKind::UnknownCollection);
    }
}
