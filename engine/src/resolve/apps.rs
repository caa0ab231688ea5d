//! The Flatpak steps of a listing: runtimes, apps on offer, and AppStream names and icons.
//!
//! An app's new commit may name a runtime (`xa.metadata`) that is not installed: it is listed
//! as an update of its own, with no current commit, and named in the app's `needs`. Such a
//! runtime comes from a drive or computer nearby only when the remote's server did not answer
//! (or was not asked: offline), or offers no newer commit of it that passes the checks, since
//! no downgrade check protects what is not installed. Names, summaries and icons come from the
//! remote's AppStream branch, verified like any other commit.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::flatpak::needed_runtime;
use super::{appstream, normalize_url, push_once, Resolver, Want, Winner};
use crate::object::FlatpakRef;
use crate::schema::{AppInfo, AvailableApp, Problem, ProblemKind, SourceKind, TargetKind, Update};
use crate::source::source_name;

impl Resolver<'_> {
    /// Apps on drives and computers nearby that no target has installed, for the Flatpak
    /// target whose enabled remote has their collection ID (the system installation first),
    /// and how many app refs belong to collections no remote here knows.
    pub(super) fn available_wants(&self) -> (Vec<Want>, u64) {
        let installed_apps: HashSet<&str> = self
            .targets
            .iter()
            .filter(|t| t.kind == TargetKind::Flatpak)
            .flat_map(|t| t.installed.iter().map(|i| i.ref_name.as_str()))
            .collect();
        // Collection ID → (target, remote), the system installation preferred.
        let mut homes: HashMap<&str, (usize, &str)> = HashMap::new();
        let mut flatpak_targets: Vec<usize> = (0..self.targets.len())
            .filter(|&i| self.targets[i].kind == TargetKind::Flatpak)
            .collect();
        flatpak_targets.sort_by_key(|&i| (self.targets[i].installation != "system", i));
        for &index in &flatpak_targets {
            for remote in &self.targets[index].remotes {
                if let (Some(collection_id), false) =
                    (remote.collection_id.as_deref(), remote.disabled)
                {
                    homes
                        .entry(collection_id)
                        .or_insert((index, remote.name.as_str()));
                }
            }
        }
        let known_elsewhere = |collection_id: &str| {
            self.options.known_collections.contains(collection_id)
                || self.targets.iter().any(|t| {
                    t.remotes
                        .iter()
                        .any(|r| r.collection_id.as_deref() == Some(collection_id))
                })
        };
        let mut wants: Vec<Want> = Vec::new();
        let mut unknown: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (index, offers) in self.offers.iter().enumerate() {
            let Some(offers) = offers else { continue };
            // A server's whole catalogue is not "on this drive".
            if self.sources[index].info().kind == SourceKind::Upstream {
                continue;
            }
            for (ref_name, entries) in offers {
                if !FlatpakRef::parse(ref_name).is_some_and(|r| r.is_app)
                    || installed_apps.contains(ref_name.as_str())
                {
                    continue;
                }
                for (collection_id, _) in entries {
                    let Some(collection_id) = collection_id.as_deref() else {
                        continue;
                    };
                    match homes.get(collection_id) {
                        Some(&(target, remote)) => push_once(
                            &mut wants,
                            Want {
                                target,
                                remote: remote.to_owned(),
                                collection_id: Some(collection_id.to_owned()),
                                ref_name: ref_name.clone(),
                                installed: None,
                                offered: true,
                            },
                        ),
                        None if !known_elsewhere(collection_id) => {
                            unknown.insert((collection_id, ref_name.as_str()));
                        }
                        None => {}
                    }
                }
            }
        }
        wants.sort_by(|a, b| a.ref_name.cmp(&b.ref_name));
        (wants, unknown.len() as u64)
    }

    /// The offered apps among `found` (with their updates in `all`), each with the missing
    /// runtimes it needs; an app whose runtime no source offers is left out (the problem
    /// says why).
    pub(super) fn available_apps(
        &self,
        found: &[(Want, Winner)],
        all: &[Update],
        sizes: &[u64],
        first_runtime: usize,
    ) -> Vec<AvailableApp> {
        let mut apps = Vec::new();
        for index in 0..first_runtime.min(found.len()) {
            let (want, _) = &found[index];
            if !want.offered {
                continue;
            }
            let app = &all[index];
            let mut runtimes = Vec::new();
            let mut download_size = sizes[index];
            for need in &app.needs {
                let runtime = (first_runtime..found.len())
                    .find(|&i| found[i].0.target == want.target && &found[i].0.ref_name == need);
                let Some(runtime) = runtime else { break };
                runtimes.push(all[runtime].clone());
                download_size = download_size.saturating_add(sizes[runtime]);
            }
            if runtimes.len() == app.needs.len() {
                apps.push(AvailableApp {
                    app: app.clone(),
                    runtimes,
                    download_size,
                });
            }
        }
        apps
    }

    /// Runtimes the new app commits in `found` need but their installation lacks: what each
    /// update needs (by position), and the refs to look for.
    pub(super) fn needed_runtimes(
        &self,
        found: &[(Want, Winner)],
    ) -> (Vec<Vec<String>>, Vec<Want>) {
        let mut needs: Vec<Vec<String>> = vec![Vec::new(); found.len()];
        let mut wants: Vec<Want> = Vec::new();
        // Sets, so the work grows linearly with the installed refs and the updates found.
        let installed: HashSet<(usize, &str)> = self
            .targets
            .iter()
            .enumerate()
            .flat_map(|(index, target)| {
                target
                    .installed
                    .iter()
                    .map(move |i| (index, i.ref_name.as_str()))
            })
            .collect();
        let mut wanted: HashSet<(usize, String, String)> = HashSet::new();
        for (index, (want, winner)) in found.iter().enumerate() {
            let target = &self.targets[want.target];
            if target.kind != TargetKind::Flatpak {
                continue;
            }
            let Some(runtime) = needed_runtime(&winner.fetched.commit) else {
                continue;
            };
            if installed.contains(&(want.target, runtime.as_str())) {
                continue;
            }
            needs[index].push(runtime.clone());
            if wanted.insert((want.target, want.remote.clone(), runtime.clone())) {
                wants.push(Want {
                    ref_name: runtime,
                    installed: None,
                    offered: false,
                    ..want.clone()
                });
            }
        }
        (needs, wants)
    }

    /// Why the chosen commit of a runtime that is not installed yet cannot be taken, if it
    /// cannot. Online (a server at the remote's URL answered with its refs), the commit must be
    /// at least as new as the newest commit of the runtime that server offers and that passes
    /// the checks; a drive or computer nearby could otherwise bring an old runtime the server
    /// has long replaced, which no downgrade check catches since nothing is installed.
    /// Offline (`--offline`, or the server unreachable) what the drives carry is taken.
    pub(super) fn runtime_refusal(&self, want: &Want, winner: &Winner) -> Option<Problem> {
        let remote_url = normalize_url(self.remote(want)?.url.as_deref()?);
        let servers: Vec<usize> = (0..self.sources.len())
            .filter(|&index| {
                let info = self.sources[index].info();
                info.kind == SourceKind::Upstream
                    && normalize_url(&info.location) == remote_url
                    && matches!(self.offers.get(index), Some(Some(_)))
            })
            .collect();
        if servers.is_empty() {
            return None;
        }
        let newest_on_server = self
            .candidates(0, want)
            .iter()
            .filter(|candidate| servers.contains(&candidate.source))
            .filter_map(|candidate| self.check(want, candidate).ok().flatten())
            .map(|(timestamp, _)| timestamp)
            .max();
        let source = winner
            .sources
            .first()
            .map_or_else(|| remote_url.clone(), |&index| self.names[index].clone());
        let origin = winner
            .sources
            .first()
            .map(|&index| Box::new(self.sources[index].info().clone()));
        let problem = |kind: ProblemKind, reason: String| Problem {
            kind,
            source: source.clone(),
            origin: origin.clone(),
            ref_name: Some(want.ref_name.clone()),
            reason,
        };
        let timestamp = winner.fetched.commit.timestamp;
        match newest_on_server {
            Some(newest) if newest <= timestamp => None,
            Some(_) => Some(problem(
                ProblemKind::Downgrade,
                format!(
                    "{} is not installed and commit {}… on {source} is older than what                      {remote_url} offers: install it from {remote_url}",
                    want.ref_name,
                    winner.commit.short()
                ),
            )),
            None => Some(problem(
                ProblemKind::Unavailable,
                format!(
                    "{} is not installed, and {remote_url} offers no usable commit of it to                      show that commit {}… on {source} is current: a runtime that is not                      installed is taken from a drive or computer nearby only when it is as new                      as the server's, or when offline (--offline)",
                    want.ref_name,
                    winner.commit.short()
                ),
            )),
        }
    }

    /// The AppStream branches (`appstream2/<arch>`, then `appstream/<arch>`) of the remotes
    /// the app updates in `found` come from.
    pub(super) fn appstream_wants(&self, found: &[(Want, Winner)]) -> Vec<Want> {
        let mut wants = Vec::new();
        for (want, _) in found {
            if self.targets[want.target].kind != TargetKind::Flatpak {
                continue;
            }
            let Some(app) = FlatpakRef::parse(&want.ref_name).filter(|r| r.is_app) else {
                continue;
            };
            for branch in ["appstream2", "appstream"] {
                push_once(
                    &mut wants,
                    Want {
                        ref_name: format!("{branch}/{}", app.arch),
                        installed: None,
                        offered: false,
                        ..want.clone()
                    },
                );
            }
        }
        wants
    }

    /// AppStream names, summaries and icons for the app updates in `found`.
    pub(super) fn app_infos(
        &mut self,
        found: &[(Want, Winner)],
        appstream: &[(Want, Option<Winner>)],
    ) -> Vec<Option<AppInfo>> {
        let mut infos = Vec::with_capacity(found.len());
        for (want, _) in found {
            let Some(app) = FlatpakRef::parse(&want.ref_name).filter(|r| r.is_app) else {
                infos.push(None);
                continue;
            };
            if self.targets[want.target].kind != TargetKind::Flatpak {
                infos.push(None);
                continue;
            }
            let branches = [
                format!("appstream2/{}", app.arch),
                format!("appstream/{}", app.arch),
            ];
            let mut info = None;
            for branch in &branches {
                let Some(winner) = appstream.iter().find_map(|(w, winner)| {
                    (w.target == want.target && w.remote == want.remote && &w.ref_name == branch)
                        .then_some(winner.as_ref())
                        .flatten()
                }) else {
                    continue;
                };
                if let Some(found) = self.app_info(winner, app.id) {
                    info = Some(found);
                    break;
                }
            }
            infos.push(info);
        }
        infos
    }

    fn app_info(&mut self, appstream: &Winner, app_id: &str) -> Option<AppInfo> {
        let &source_index = appstream.sources.first()?;
        let source = self.sources[source_index].as_ref();
        let root = appstream.fetched.commit.root_tree;
        let catalog = self
            .catalogs
            .entry((source_index, appstream.commit))
            .or_insert_with(|| match appstream::read_catalog(source, &root) {
                Ok(catalog) => Some(Arc::new(catalog)),
                Err(reason) => {
                    tracing::warn!(source = %source_name(source.info()), %reason,
                        "AppStream data cannot be read");
                    None
                }
            })
            .clone()?;
        let entry = catalog.get(app_id)?;
        let icon = self.options.icon_cache.as_deref().and_then(|dir| {
            match appstream::cache_icon(source, &root, app_id, dir) {
                Ok(path) => path.map(|p| p.display().to_string()),
                Err(reason) => {
                    tracing::warn!(app_id, %reason, "app icon cannot be cached");
                    None
                }
            }
        });
        Some(AppInfo {
            name: entry.name.clone(),
            summary: entry.summary.clone(),
            version: entry.version.clone(),
            icon,
        })
    }
}
