//! What goes on the drive: the refs the selection names, and the objects of their closures
//! the drive lacks, with the bytes each will take there.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;

use super::deltas::{delta_start, plan_delta, DeltaJob};
use super::{CarriedRef, DeltaFrom, PrepareError, Selection, WORKERS};
use crate::cancel::CancelToken;
use crate::event::{Event, MessageLevel, Reporter};
use crate::object::{metadata_checksum, Checksum, DirTree, ObjectId, ObjectKind, Reach, Subdirs};
use crate::repo::{RefLocation, Repo, RepoError, RepoMode};
use crate::schema::TargetKind;
use crate::target::Target;

/// Header bytes allowed per archived object when estimating the size of a bare one.
const ARCHIVE_HEADER_ESTIMATE: u64 = 512;

/// A ref chosen from a target.
#[derive(Debug, Clone)]
pub(super) struct Chosen {
    pub(super) target: usize,
    pub(super) collection_id: String,
    pub(super) ref_name: String,
    pub(super) commit: Checksum,
    /// Flatpak subpaths installed (some languages of a locale extension); empty: all.
    subpaths: Vec<String>,
    /// The parts of the tree carried; None for all of it.
    pub(super) parts: Option<Subdirs>,
}

/// An object to write, where it is read from, and the bytes it will take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planned {
    pub(super) object: ObjectId,
    pub(super) source: usize,
    pub(super) size: u64,
}

/// What walking the chosen commits found to write.
#[derive(Default)]
pub(super) struct Walk {
    pub(super) seen: HashSet<ObjectId>,
    /// Trees planned only as the way to a part of a commit (not walked whole).
    on_the_way: HashSet<ObjectId>,
    /// Dirtrees, dirmeta and content, written first.
    pub(super) objects: Vec<Planned>,
    /// Commits and their detached metadata, written once everything else is.
    pub(super) commits: Vec<Planned>,
}

impl Walk {
    fn planned_bytes(&self) -> u64 {
        self.objects
            .iter()
            .chain(&self.commits)
            .fold(0u64, |sum, planned| sum.saturating_add(planned.size))
    }
}

/// The refs `selection` names in `targets`, with the runtimes and extensions apps need and
/// the AppStream and `ostree-metadata` refs of the remotes carried.
pub(super) fn choose_refs(
    targets: &[Target],
    selection: &Selection,
) -> Result<Vec<Chosen>, PrepareError> {
    let everything = selection.everything();
    let mut wanted: Vec<(usize, &crate::target::InstalledRef)> = Vec::new();
    let mut found_names: HashSet<&str> = HashSet::new();
    for (index, target) in targets.iter().enumerate() {
        match target.kind {
            TargetKind::Os if everything || selection.os => {
                wanted.extend(target.installed.iter().map(|r| (index, r)));
            }
            TargetKind::Flatpak => {
                let names = flatpak_refs_named(target, selection, &mut found_names);
                wanted.extend(
                    target
                        .installed
                        .iter()
                        .filter(|r| names.contains(&r.ref_name))
                        .map(|r| (index, r)),
                );
            }
            _ => {}
        }
    }
    if let Some(missing) = selection
        .apps
        .iter()
        .chain(&selection.runtimes)
        .find(|name| !found_names.contains(name.as_str()))
    {
        return Err(PrepareError::NotInstalled(missing.clone()));
    }

    let mut chosen: Vec<Chosen> = Vec::new();
    let mut keys: HashSet<(String, String)> = HashSet::new();
    let mut refused: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
    let mut remotes: BTreeSet<(usize, String, String)> = BTreeSet::new();
    for (index, installed) in wanted {
        let remote = installed.remote.clone().unwrap_or_default();
        let Some(collection_id) = installed.collection_id.clone() else {
            refused
                .entry((index, remote))
                .or_default()
                .push(installed.ref_name.clone());
            continue;
        };
        remotes.insert((index, remote, collection_id.clone()));
        if keys.insert((collection_id.clone(), installed.ref_name.clone())) {
            chosen.push(Chosen {
                target: index,
                collection_id,
                ref_name: installed.ref_name.clone(),
                commit: installed.commit,
                subpaths: installed.subpaths.clone(),
                parts: None,
            });
        }
    }
    if let Some(((index, remote), refs)) = refused.into_iter().next() {
        return Err(no_collection_id(&targets[index], remote, &refs));
    }
    for (index, remote, collection_id) in remotes {
        add_remote_metadata(
            index,
            &targets[index],
            &remote,
            &collection_id,
            &mut keys,
            &mut chosen,
        )?;
    }
    Ok(chosen)
}

/// The refs of Flatpak installation `target` that `selection` names, with the runtime and
/// the extensions (runtimes named after the app or its runtime, locales among them) of
/// each app chosen. The app and runtime names of the selection found are added to
/// `found_names`.
fn flatpak_refs_named<'s>(
    target: &Target,
    selection: &'s Selection,
    found_names: &mut HashSet<&'s str>,
) -> BTreeSet<String> {
    let everything = selection.everything();
    let mut names: BTreeSet<String> = BTreeSet::new();
    // Runtimes named after `prefixes`' ids (`org.example.App.` names its extensions).
    let extensions_of = |prefixes: &[String], names: &mut BTreeSet<String>| {
        for other in &target.installed {
            if let Some(id) = flatpak_id(&other.ref_name, "runtime/") {
                if prefixes
                    .iter()
                    .any(|prefix| id.starts_with(prefix.as_str()))
                {
                    names.insert(other.ref_name.clone());
                }
            }
        }
    };
    for installed in &target.installed {
        let Some(runtime_id) = flatpak_id(&installed.ref_name, "runtime/") else {
            continue;
        };
        if let Some(name) = naming(&selection.runtimes, runtime_id, &installed.ref_name) {
            found_names.insert(name.as_str());
            names.insert(installed.ref_name.clone());
            extensions_of(&[format!("{runtime_id}.")], &mut names);
        }
    }
    for installed in &target.installed {
        let Some(app_id) = flatpak_id(&installed.ref_name, "app/") else {
            if everything {
                names.insert(installed.ref_name.clone());
            }
            continue;
        };
        let named = naming(&selection.apps, app_id, &installed.ref_name);
        if let Some(app) = named {
            found_names.insert(app.as_str());
        }
        if !(everything || selection.all_apps || named.is_some()) {
            continue;
        }
        names.insert(installed.ref_name.clone());
        let mut prefixes = vec![format!("{app_id}.")];
        if let Some(runtime) = &installed.runtime {
            names.insert(runtime.clone());
            if let Some(runtime_id) = flatpak_id(runtime, "runtime/") {
                prefixes.push(format!("{runtime_id}."));
            }
        }
        extensions_of(&prefixes, &mut names);
    }
    names
}

/// The entry of `names` (IDs or full refs, as asked for) that names the ref `ref_name` of
/// ID `id`.
fn naming<'n>(names: &'n [String], id: &str, ref_name: &str) -> Option<&'n String> {
    names.iter().find(|name| *name == id || *name == ref_name)
}

/// The refusal for `refs` of `target`, whose `remote` has no collection ID, with how to set
/// one.
fn no_collection_id(target: &Target, remote: String, refs: &[String]) -> PrepareError {
    let fix = match target.kind {
        TargetKind::Flatpak => format!(
            "Set one with `flatpak remote-modify --collection-id=ID {remote}` (or \
             DeploySideloadCollectionID in the remote's .flatpakrepo file)"
        ),
        _ => format!(
            "Set one with `ostree --repo={} config set --group='remote \"{remote}\"' \
             collection-id ID`",
            target.repo.display()
        ),
    };
    let remote = if remote.is_empty() {
        "(none: deployed from a local branch)".to_owned()
    } else {
        remote
    };
    PrepareError::NoCollectionId {
        remote,
        refs: refs.join(", "),
        source_label: target.installation.clone(),
        fix,
    }
}

/// Adds the AppStream and `ostree-metadata` refs of `remote` that target `index` (`target`)
/// holds whole, under `collection_id`, unless already chosen.
fn add_remote_metadata(
    index: usize,
    target: &Target,
    remote: &str,
    collection_id: &str,
    keys: &mut HashSet<(String, String)>,
    chosen: &mut Vec<Chosen>,
) -> Result<(), PrepareError> {
    let Ok(repo) = Repo::open(&target.repo) else {
        return Ok(());
    };
    for (location, commit) in repo.list_refs()? {
        let RefLocation::Remote {
            remote: ref_remote,
            name,
        } = &location
        else {
            continue;
        };
        let extra = name.starts_with("appstream2/")
            || name.starts_with("appstream/")
            || name == "ostree-metadata";
        if ref_remote != remote || !extra {
            continue;
        }
        // A partial commit (flatpak pulls appstream whole, but be safe) is left behind.
        if repo.is_partial(&commit)? {
            continue;
        }
        if keys.insert((collection_id.to_owned(), name.clone())) {
            chosen.push(Chosen {
                target: index,
                collection_id: collection_id.to_owned(),
                ref_name: name.clone(),
                commit,
                subpaths: Vec::new(),
                parts: None,
            });
        }
    }
    Ok(())
}

/// `org.example.App` of `app/org.example.App/x86_64/stable` (with `prefix` `app/`).
fn flatpak_id<'r>(ref_name: &'r str, prefix: &str) -> Option<&'r str> {
    let parsed = crate::object::FlatpakRef::parse(ref_name)?;
    (parsed.is_app == (prefix == "app/")).then_some(parsed.id)
}

/// The parts of `item`'s tree to carry (None: all of it), or why it is left behind.
/// `partial`: the source holds only part of the commit.
fn carried_parts(
    item: &Chosen,
    partial: bool,
    selection: &Selection,
) -> Result<Option<Subdirs>, String> {
    let installed = if partial {
        if item.subpaths.is_empty() {
            return Err("its commit is marked partial, with no subpaths recorded".to_owned());
        }
        Some(item.subpaths.clone())
    } else {
        None
    };
    let is_locale = crate::object::FlatpakRef::is_locale_extension(&item.ref_name);
    let subpaths = match installed {
        Some(have) if is_locale && !selection.locales.is_empty() => {
            let narrowed: Vec<String> = have
                .into_iter()
                .filter(|subpath| {
                    let language = subpath.trim_matches('/');
                    selection.locales.iter().any(|wanted| wanted == language)
                })
                .collect();
            if narrowed.is_empty() {
                return Err(format!(
                    "none of the languages {} is installed",
                    selection.locales.join(", ")
                ));
            }
            Some(narrowed)
        }
        None if is_locale && !selection.locales.is_empty() => Some(
            selection
                .locales
                .iter()
                .map(|language| format!("/{language}"))
                .collect(),
        ),
        other => other,
    };
    match subpaths {
        Some(subpaths) => Subdirs::for_flatpak(&subpaths).map_err(|error| error.to_string()),
        None => Ok(None),
    }
}

/// Adds the objects of `commit`'s closure that `drive` lacks, or of `parts` of it. A commit
/// the drive holds, not marked partial, is complete there and not walked.
pub(super) fn walk_commit(
    source: &Repo,
    source_index: usize,
    commit: &Checksum,
    parts: Option<&Subdirs>,
    drive: Option<&Repo>,
    walk: &mut Walk,
) -> Result<(), PrepareError> {
    let Walk {
        seen,
        on_the_way,
        objects,
        commits,
    } = walk;
    let reach = |path: &str| parts.map_or(Reach::Whole, |parts| parts.reach(path));
    let commit_id = ObjectId::new(*commit, ObjectKind::Commit);
    if !seen.insert(commit_id) {
        return Ok(());
    }
    let meta_id = ObjectId::new(*commit, ObjectKind::CommitMeta);
    let source_meta = source.read_commitmeta(commit)?;
    let planned = |object, size| Planned {
        object,
        source: source_index,
        size,
    };
    let has = |object: ObjectId| -> Result<bool, PrepareError> {
        Ok(match drive {
            Some(drive) => drive.has_object(object)?,
            None => false,
        })
    };
    // Detached metadata as the source has it now, byte for byte.
    if let Some(bytes) = &source_meta {
        let same = match drive {
            Some(drive) => drive.read_commitmeta(commit)?.as_ref() == Some(bytes),
            None => false,
        };
        if !same {
            commits.push(planned(meta_id, bytes.len() as u64));
        }
    }
    let parsed = source.read_commit(commit)?;
    // A commit carried as a delta (`--delta-from`) is on the drive without its trees.
    let complete_on_drive = match drive {
        Some(drive) => {
            drive.has_object(commit_id)?
                && !drive.is_partial(commit)?
                && drive.has_object(ObjectId::new(parsed.root_tree, ObjectKind::DirTree))?
        }
        None => false,
    };
    if complete_on_drive {
        return Ok(());
    }
    let archived_sizes: HashMap<Checksum, u64> = parsed
        .sizes()
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .filter(|size| size.kind == ObjectKind::File)
        .map(|size| (size.checksum, size.archived))
        .collect();
    let mut pending_trees: Vec<(Checksum, Checksum, String)> =
        vec![(parsed.root_tree, parsed.root_meta, "/".to_owned())];
    let mut files: Vec<ObjectId> = Vec::new();
    while let Some((tree, meta, path)) = pending_trees.pop() {
        let meta_id = ObjectId::new(meta, ObjectKind::DirMeta);
        if seen.insert(meta_id) && !has(meta_id)? {
            let size = source.metadata_size(meta_id)?.unwrap_or(0);
            objects.push(planned(meta_id, size));
        }
        let tree_id = ObjectId::new(tree, ObjectKind::DirTree);
        // A tree on the way to a part is walked for that part alone; met again as a whole,
        // it is walked again.
        let along = reach(&path) == Reach::Along;
        let plan_tree = if along {
            !seen.contains(&tree_id) && on_the_way.insert(tree_id)
        } else {
            if !seen.insert(tree_id) {
                continue;
            }
            !on_the_way.contains(&tree_id)
        };
        let bytes = source.read_metadata(ObjectKind::DirTree, &tree)?;
        if metadata_checksum(&bytes) != tree {
            return Err(PrepareError::SourceCorrupt {
                repo: source.path().to_path_buf(),
                object: tree_id,
            });
        }
        let parsed_tree = DirTree::parse(&bytes).map_err(|source| PrepareError::Format {
            object: tree_id,
            source,
        })?;
        if plan_tree && !has(tree_id)? {
            objects.push(planned(tree_id, bytes.len() as u64));
        }
        // Paths matter only when some parts are carried.
        let child_path = |name: &str| match parts {
            Some(_) => crate::object::child_path(&path, name),
            None => String::new(),
        };
        for file in &parsed_tree.files {
            if along && reach(&child_path(&file.name)) != Reach::Whole {
                continue;
            }
            let file_id = ObjectId::new(file.checksum, ObjectKind::File);
            if seen.insert(file_id) {
                files.push(file_id);
            }
        }
        for dir in &parsed_tree.dirs {
            let child = child_path(&dir.name);
            if along && reach(&child) == Reach::Outside {
                continue;
            }
            pending_trees.push((dir.tree, dir.meta, child));
        }
    }
    // Looking up every content object is a cold metadata read each: done by many workers.
    let estimated = estimate_files(source, drive, &files, &archived_sizes)?;
    objects.extend(
        files
            .iter()
            .zip(estimated)
            .filter_map(|(file_id, size)| size.map(|size| planned(*file_id, size))),
    );
    let size = source.metadata_size(commit_id)?.unwrap_or_default();
    commits.push(planned(commit_id, size));
    Ok(())
}

/// For each of `files`, None when `drive` has it already, else the bytes it will take there
/// ([`content_estimate`]); in order, looked up by [`WORKERS`] threads.
fn estimate_files(
    source: &Repo,
    drive: Option<&Repo>,
    files: &[ObjectId],
    archived_sizes: &HashMap<Checksum, u64>,
) -> Result<Vec<Option<u64>>, PrepareError> {
    let estimate = |file_id: &ObjectId| -> Result<Option<u64>, PrepareError> {
        if let Some(drive) = drive {
            if drive.has_object(*file_id)? {
                return Ok(None);
            }
        }
        let archived = archived_sizes.get(&file_id.checksum);
        content_estimate(source, *file_id, archived).map(Some)
    };
    let sizes = crate::parallel::map_chunked(files, WORKERS, 64, estimate).ok_or_else(|| {
        PrepareError::io(
            "read",
            source.path().to_path_buf(),
            io::Error::other("a worker looking up objects stopped"),
        )
    })?;
    sizes.into_iter().collect()
}

/// The bytes a content object takes in archive form: its file in an archive source, the
/// commit's `ostree.sizes` entry, else its size with deflate's worst case added.
fn content_estimate(
    source: &Repo,
    object: ObjectId,
    archived: Option<&u64>,
) -> Result<u64, PrepareError> {
    let path = source.object_path(object);
    let stat = match std::fs::symlink_metadata(&path) {
        Ok(stat) => stat,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(RepoError::Missing {
                repo: source.path().to_path_buf(),
                object,
            }
            .into())
        }
        Err(error) => return Err(PrepareError::io("read", path, error)),
    };
    if source.mode() == RepoMode::Archive {
        return Ok(stat.len());
    }
    if let Some(archived) = archived {
        return Ok(*archived);
    }
    let size = stat.len();
    Ok(ARCHIVE_HEADER_ESTIMATE + size + size / 16_384 * 5 + 5)
}

/// The repositories read from: each target holding a chosen ref, opened once.
/// [`Planned::source`] indexes them.
pub(super) struct SourceRepos {
    repos: Vec<Repo>,
    by_target: HashMap<usize, usize>,
}

impl SourceRepos {
    pub(super) fn open(targets: &[Target], chosen: &[Chosen]) -> Result<Self, PrepareError> {
        let mut repos = Vec::new();
        let mut by_target = HashMap::new();
        for item in chosen {
            if let std::collections::hash_map::Entry::Vacant(slot) = by_target.entry(item.target) {
                slot.insert(repos.len());
                repos.push(Repo::open(&targets[item.target].repo)?);
            }
        }
        Ok(Self { repos, by_target })
    }

    /// The index of the repository of `target`, one of the chosen refs' targets.
    fn index_of(&self, target: usize) -> usize {
        self.by_target[&target]
    }

    /// The repository at `index`.
    pub(super) fn get(&self, index: usize) -> &Repo {
        &self.repos[index]
    }
}

/// The chosen refs that can be carried. Refs installed in part (Flatpak's locale extensions
/// with some languages) are carried in that part, as `flatpak` pulls them; `--locale`
/// narrows locale extensions further. Refused when nothing is left.
pub(super) fn keep_carried(
    chosen: Vec<Chosen>,
    sources: &SourceRepos,
    targets: &[Target],
    selection: &Selection,
    reporter: &dyn Reporter,
) -> Result<Vec<Chosen>, PrepareError> {
    let mut kept = Vec::with_capacity(chosen.len());
    for mut item in chosen {
        let source = sources.get(sources.index_of(item.target));
        let installation = &targets[item.target].installation;
        match carried_parts(&item, source.is_partial(&item.commit)?, selection) {
            Ok(parts) => {
                if let Some(parts) = &parts {
                    reporter.on_event(Event::Message {
                        level: MessageLevel::Info,
                        text: format!(
                            "{} is put on the drive with only {parts} (of {installation})",
                            item.ref_name
                        ),
                    });
                }
                item.parts = parts;
                kept.push(item);
            }
            Err(why) => reporter.on_event(Event::Message {
                level: MessageLevel::Warning,
                text: format!(
                    "{} is installed only in part in {installation} ({why}); it is not put on \
                     the drive",
                    item.ref_name
                ),
            }),
        }
    }
    if kept.is_empty() {
        return Err(PrepareError::NothingSelected(
            "no OS deployment or installed app was found in the chosen places".to_owned(),
        ));
    }
    Ok(kept)
}

/// What to write for the chosen refs.
pub(super) struct Planning {
    /// Dirtrees, dirmeta and content, written first.
    pub(super) objects: Vec<Planned>,
    /// Commits and their detached metadata, written once everything else is.
    pub(super) commits: Vec<Planned>,
    /// What the drive will carry, per ref, with the new bytes each brings.
    pub(super) carried: Vec<CarriedRef>,
    /// OS refs carried as deltas.
    pub(super) deltas: Vec<DeltaJob>,
    /// Planned bytes of the objects the deltas carry: a delta is about this size or smaller.
    pub(super) delta_bytes: u64,
}

/// Plans the closure of every chosen commit the drive (`drive`, when it holds a repository)
/// does not hold completely yet; with `delta_from`, OS refs as deltas where a start is found.
pub(super) fn plan_refs(
    targets: &[Target],
    sources: &SourceRepos,
    chosen: &[Chosen],
    delta_from: Option<DeltaFrom>,
    drive: Option<&Repo>,
    reporter: &dyn Reporter,
    cancel: &CancelToken,
) -> Result<Planning, PrepareError> {
    let mut walk = Walk::default();
    let mut carried = Vec::new();
    let mut deltas = Vec::new();
    let mut delta_bytes: u64 = 0;
    for item in chosen {
        if cancel.is_cancelled() {
            return Err(PrepareError::Cancelled);
        }
        let index = sources.index_of(item.target);
        let source = sources.get(index);
        let location = RefLocation::mirror(&item.collection_id, &item.ref_name);
        let on_drive = match drive {
            Some(drive) => drive.resolve_ref(&location)?,
            None => None,
        };
        let before = walk.planned_bytes();
        let start = match delta_from {
            Some(from) if on_drive != Some(item.commit) && item.parts.is_none() => {
                delta_start(&targets[item.target], source, item, from, reporter)?
            }
            _ => None,
        };
        let new_bytes = match start {
            Some(from) => {
                let estimate = plan_delta(source, index, &item.commit, &from, drive, &mut walk)?;
                delta_bytes = delta_bytes.saturating_add(estimate);
                deltas.push(DeltaJob {
                    source: index,
                    from,
                    to: item.commit,
                });
                walk.planned_bytes()
                    .saturating_sub(before)
                    .saturating_add(estimate)
            }
            None => {
                walk_commit(
                    source,
                    index,
                    &item.commit,
                    item.parts.as_ref(),
                    drive,
                    &mut walk,
                )?;
                walk.planned_bytes().saturating_sub(before)
            }
        };
        carried.push(CarriedRef {
            collection_id: item.collection_id.clone(),
            ref_name: item.ref_name.clone(),
            commit: item.commit.to_hex(),
            target: targets[item.target].kind,
            source: targets[item.target].installation.clone(),
            up_to_date: on_drive == Some(item.commit),
            new_bytes,
            subpaths: item
                .parts
                .as_ref()
                .map(Subdirs::flatpak_subpaths)
                .unwrap_or_default(),
        });
    }
    Ok(Planning {
        objects: walk.objects,
        commits: walk.commits,
        carried,
        deltas,
        delta_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_extensions_go_with_the_languages_installed_or_asked_for() {
        let item = |ref_name: &str, subpaths: &[&str]| Chosen {
            target: 0,
            collection_id: "org.example.Apps".to_owned(),
            ref_name: ref_name.to_owned(),
            commit: Checksum::from_array([7; 32]),
            subpaths: subpaths.iter().map(|s| (*s).to_owned()).collect(),
            parts: None,
        };
        let asking = |languages: &[&str]| Selection {
            locales: languages.iter().map(|s| (*s).to_owned()).collect(),
            ..Selection::default()
        };
        let locale = "runtime/org.example.App.Locale/x86_64/stable";
        let subpaths = |parts: Option<Subdirs>| parts.map(|p| p.flatpak_subpaths());
        let none = Selection::default();

        // Whole: all of it, unless languages are asked for.
        assert_eq!(carried_parts(&item(locale, &[]), false, &none), Ok(None));
        let french = carried_parts(&item(locale, &[]), false, &asking(&["fr"])).map(subpaths);
        assert_eq!(french, Ok(Some(vec!["/fr".to_owned()])));
        // In part: the languages installed, narrowed by those asked for.
        let installed = item(locale, &["/de", "/fr"]);
        let both = carried_parts(&installed, true, &none).map(subpaths);
        assert_eq!(both, Ok(Some(vec!["/de".to_owned(), "/fr".to_owned()])));
        let german = carried_parts(&installed, true, &asking(&["de", "it"])).map(subpaths);
        assert_eq!(german, Ok(Some(vec!["/de".to_owned()])));
        assert!(carried_parts(&installed, true, &asking(&["it"])).is_err());
        // Marked partial with no subpaths: an interrupted pull, left behind.
        assert!(carried_parts(&item(locale, &[]), true, &none).is_err());
        // Languages leave other refs whole.
        let app = item("app/org.example.App/x86_64/stable", &[]);
        assert_eq!(carried_parts(&app, false, &asking(&["fr"])), Ok(None));
    }

    #[test]
    fn flatpak_ids_come_from_the_second_component() {
        assert_eq!(
            flatpak_id("app/org.example.App/x86_64/stable", "app/"),
            Some("org.example.App")
        );
        assert_eq!(
            flatpak_id("runtime/org.example.App/x86_64/stable", "app/"),
            None
        );
    }
}
