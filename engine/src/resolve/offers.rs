//! What each source offers, and which of it a target wants.
//!
//! Every source's refs are read at once. Drive and LAN refs match an installed ref by
//! collection ID, never by name alone; upstream (a remote's own `url`) matches the installed
//! refs of the remotes with that URL, with or without collection IDs. Drive refs no remote here
//! can take are reported, since the user sees the drive and expects its contents listed.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{fetch_problem_kind, normalize_url, parallel, Candidate, Offers, Resolver, Want};
use crate::schema::{Problem, ProblemKind, SourceKind};
use crate::source::{FetchError, OfferedRef};
use crate::trust::TrustError;

impl Resolver<'_> {
    /// Every source's refs, read in parallel.
    pub(super) fn read_offers(&mut self) {
        let indices: Vec<usize> = (0..self.sources.len()).collect();
        let sources = self.sources;
        let results: Vec<Result<Vec<OfferedRef>, FetchError>> =
            parallel::map(&indices, 16, |&index| sources[index].refs());
        for (index, result) in results.into_iter().enumerate() {
            match result {
                Ok(refs) => {
                    let mut offers: Offers = HashMap::new();
                    for offered in refs {
                        offers
                            .entry(offered.ref_name)
                            .or_default()
                            .push((offered.collection_id, offered.commit));
                    }
                    self.offers.push(Some(offers));
                }
                Err(error) => {
                    self.problems.push(Problem {
                        kind: fetch_problem_kind(&error),
                        source: self.names[index].clone(),
                        origin: Some(Box::new(self.sources[index].info().clone())),
                        ref_name: None,
                        reason: format!(
                            "{}: check the drive or connection and try again",
                            crate::causes::Causes(&error)
                        ),
                    });
                    self.offers.push(None);
                }
            }
        }
    }

    /// Drive and LAN refs nobody here can take: collections no remote on this machine has,
    /// and refs without a collection ID that share a name with an installed ref.
    pub(super) fn report_unmatched_offers(&mut self) {
        let mut known: HashSet<&str> = self
            .options
            .known_collections
            .iter()
            .map(String::as_str)
            .collect();
        for target in self.targets {
            known.extend(
                target
                    .remotes
                    .iter()
                    .filter_map(|remote| remote.collection_id.as_deref()),
            );
        }
        let installed_names: HashSet<&str> = self
            .targets
            .iter()
            .flat_map(|t| t.installed.iter())
            .filter(|i| i.collection_id.is_some())
            .map(|i| i.ref_name.as_str())
            .collect();
        let mut found = Vec::new();
        for (index, offers) in self.offers.iter().enumerate() {
            let Some(offers) = offers else { continue };
            if self.sources[index].info().kind == SourceKind::Upstream {
                continue;
            }
            let mut unknown: BTreeSet<&str> = BTreeSet::new();
            let mut unbound: BTreeSet<&str> = BTreeSet::new();
            for (ref_name, entries) in offers {
                for (collection_id, _) in entries {
                    match collection_id.as_deref() {
                        Some(id) if !known.contains(id) => {
                            unknown.insert(id);
                        }
                        None if installed_names.contains(ref_name.as_str()) => {
                            unbound.insert(ref_name);
                        }
                        _ => {}
                    }
                }
            }
            for collection_id in unknown {
                found.push(Problem {
                    kind: ProblemKind::UnknownCollection,
                    source: self.names[index].clone(),
                    origin: Some(Box::new(self.sources[index].info().clone())),
                    ref_name: None,
                    reason: self.unknown_collection_reason(collection_id),
                });
            }
            for ref_name in unbound {
                found.push(Problem {
                    kind: ProblemKind::UnknownCollection,
                    source: self.names[index].clone(),
                    origin: Some(Box::new(self.sources[index].info().clone())),
                    ref_name: Some(ref_name.to_owned()),
                    reason: format!(
                        "{ref_name} on {} has no collection ID, so Ferry cannot tell which remote \
                         it belongs to: write the drive with `ostree create-usb` or `flatpak \
                         create-usb`",
                        self.names[index]
                    ),
                });
            }
        }
        self.problems.extend(found);
    }

    fn unknown_collection_reason(&self, collection_id: &str) -> String {
        match self.targets {
            [target] => TrustError::UnknownCollection {
                repo: target.repo.clone(),
                collection_id: collection_id.to_owned(),
            }
            .to_string(),
            [] => format!(
                "no remote on this machine has collection ID {collection_id}: add the remote \
                 first"
            ),
            targets => format!(
                "no remote in {} has collection ID {collection_id}: add the remote first",
                targets
                    .iter()
                    .map(|t| t.repo.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }
    }

    /// The installed refs of every target that a usable remote can update.
    pub(super) fn installed_wants(&self) -> Vec<Want> {
        let mut wants = Vec::new();
        for (target_index, target) in self.targets.iter().enumerate() {
            for (installed_index, installed) in target.installed.iter().enumerate() {
                let Some(remote_name) = installed.remote.as_deref() else {
                    continue;
                };
                match target.remote(remote_name) {
                    Some(remote) if remote.disabled => {
                        tracing::debug!(remote = remote_name, ref_name = %installed.ref_name,
                            "remote is disabled; not looking for updates");
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        tracing::debug!(remote = remote_name, ref_name = %installed.ref_name,
                            "remote is no longer configured; not looking for updates");
                        continue;
                    }
                }
                wants.push(Want {
                    target: target_index,
                    remote: remote_name.to_owned(),
                    collection_id: installed.collection_id.clone(),
                    ref_name: installed.ref_name.clone(),
                    installed: Some(installed_index),
                    offered: false,
                });
            }
        }
        wants
    }

    /// The commits each source offers for `want`, leaving out the installed commit unless it
    /// brings languages the installation was set for since.
    pub(super) fn candidates(&self, want_index: usize, want: &Want) -> Vec<Candidate> {
        let installed = self
            .installed(want)
            .filter(|i| i.added_subpaths().is_empty())
            .map(|i| i.commit);
        let remote_url = self
            .remote(want)
            .and_then(|r| r.url.as_deref())
            .map(normalize_url);
        let mut found = Vec::new();
        for (source_index, offers) in self.offers.iter().enumerate() {
            let Some(entries) = offers.as_ref().and_then(|o| o.get(&want.ref_name)) else {
                continue;
            };
            let info = self.sources[source_index].info();
            let upstream = info.kind == SourceKind::Upstream;
            if upstream && remote_url.as_deref() != Some(normalize_url(&info.location).as_str()) {
                continue;
            }
            for (collection_id, commit) in entries {
                let matches = match (collection_id.as_deref(), want.collection_id.as_deref()) {
                    (Some(offered), Some(wanted)) => offered == wanted,
                    // Without collection IDs on both sides, only the remote's own URL counts.
                    _ => upstream,
                };
                if matches && Some(*commit) != installed {
                    found.push(Candidate {
                        want: want_index,
                        source: source_index,
                        commit: *commit,
                    });
                }
            }
        }
        found
    }
}
