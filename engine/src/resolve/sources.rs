//! Where a listing looks: drives the hook recorded under the runtime dir, paths given on the
//! command line, and each remote's own upstream URL.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::parallel;
use crate::cancel::CancelToken;
use crate::causes::Causes;
use crate::repo::{KeyFile, Repo};
use crate::schema::{DriveRecord, Problem, ProblemKind, SourceInfo, SourceKind, UpdateList};
use crate::source::{open_drive, FetchError, HttpSource, Source};
use crate::target::{default_targets, flatpak, HostPaths, Target};
use crate::trust::TrustRoots;

/// How long a listing waits for upstream servers' summaries, all together.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// Sources to list from, and the problems met while finding and opening them.
#[derive(Default)]
pub struct SourceSet {
    /// The sources opened.
    pub sources: Vec<Arc<dyn Source>>,
    /// Sources that could not be opened, and why.
    pub problems: Vec<Problem>,
}

impl std::fmt::Debug for SourceSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSet")
            .field(
                "sources",
                &self.sources.iter().map(|s| s.info()).collect::<Vec<_>>(),
            )
            .field("problems", &self.problems)
            .finish()
    }
}

impl SourceSet {
    /// Adds `other`'s sources (a repository already present is not added twice) and problems.
    pub fn extend(&mut self, other: SourceSet) {
        for source in other.sources {
            let location = &source.info().location;
            if !self.sources.iter().any(|s| &s.info().location == location) {
                self.sources.push(source);
            }
        }
        self.problems.extend(other.problems);
    }
}

/// A drive or repository to open as sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveToOpen {
    /// A mount point or a repository.
    pub path: PathBuf,
    /// The name people know it by.
    pub label: Option<String>,
    /// The hook's record of the drive ([`DriveRecord::id`]), when it has one.
    pub record: Option<String>,
}

impl DriveToOpen {
    /// A path named on a command line: no label, no record.
    pub fn named(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            label: None,
            record: None,
        }
    }

    /// The drive `record` describes, named as people know it even when it has no label.
    pub fn recorded(record: &DriveRecord) -> Self {
        Self {
            path: PathBuf::from(&record.mount),
            label: Some(record.display_name().to_owned()),
            record: Some(record.id.clone()),
        }
    }
}

/// The drives the hook recorded under `run_dir`, each scanned again and opened.
pub fn recorded_drives(run_dir: &Path) -> SourceSet {
    let (records, problems) = drive_records(run_dir);
    let drives: Vec<DriveToOpen> = records.iter().map(DriveToOpen::recorded).collect();
    let mut set = open_drives(&drives);
    set.problems.splice(0..0, problems);
    set
}

/// Drives or repositories at `drives`, scanned and opened in parallel.
pub fn open_drives(drives: &[DriveToOpen]) -> SourceSet {
    let opened = parallel::map(drives, 8, |drive| {
        open_drive(&drive.path, drive.label.as_deref(), drive.record.as_deref())
    });
    let mut set = SourceSet::default();
    for (drive, result) in drives.iter().zip(opened) {
        let opened = match result {
            Ok(opened) => opened,
            Err(error) => {
                let origin = SourceInfo {
                    drive: drive.record.clone(),
                    ..SourceInfo::new(
                        SourceKind::Drive,
                        drive.path.display().to_string(),
                        drive.label.clone(),
                    )
                };
                set.problems.push(Problem::on_source(
                    ProblemKind::Unreadable,
                    &origin,
                    None,
                    format!(
                        "{}: check that the drive is still mounted, then try again",
                        Causes(&error)
                    ),
                ));
                continue;
            }
        };
        // Per-ref findings of the scan (partial or damaged commits) are judged again, and
        // reported, for the refs that matter; problems with whole repositories stay.
        set.problems.extend(
            opened
                .report
                .problems
                .into_iter()
                .filter(|problem| problem.ref_name.is_none()),
        );
        let mut found = SourceSet::default();
        for source in opened.sources {
            found.sources.push(Arc::new(source));
        }
        set.extend(found);
    }
    set
}

/// Sources named on a command line (`--from`): drive mount points and repositories, and
/// `http://` or `https://` URLs of computers nearby.
pub fn named(locations: &[String]) -> SourceSet {
    let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
    let paths: Vec<DriveToOpen> = locations
        .iter()
        .filter(|s| !is_url(s))
        .map(DriveToOpen::named)
        .collect();
    let mut set = open_drives(&paths);
    let urls: Vec<&String> = locations.iter().filter(|s| is_url(s)).collect();
    let connected = parallel::map(&urls, 8, |url| {
        HttpSource::connect(url, SourceKind::Lan, None, &CancelToken::new())
    });
    for (url, connected) in urls.into_iter().zip(connected) {
        match connected {
            Ok(source) => set.extend(SourceSet {
                sources: vec![Arc::new(source)],
                problems: Vec::new(),
            }),
            Err(error) => set.problems.push(Problem::on_source(
                ProblemKind::Unavailable,
                &SourceInfo::new(SourceKind::Lan, url.as_str(), None),
                None,
                format!(
                    "{}: check the address and that the computer is on",
                    Causes(&error)
                ),
            )),
        }
    }
    set
}

/// How long a listing browses the local network for computers nearby.
pub const NEARBY_TIMEOUT: Duration = Duration::from_secs(2);

/// Computers nearby: browses DNS-SD for `timeout` ([`crate::lan::discover::browse`]), then
/// connects to the best-ranked repositories found (at most
/// [`MAX_PEERS`](crate::lan::discover::MAX_PEERS); a problem counts the others), in parallel,
/// their summaries fetched, each as a
/// [`SourceKind::Lan`] source labelled with its advertised name. Computers that refuse the
/// connection or serve no summary are left out, as [`ProblemKind::Unavailable`] problems.
pub fn nearby(timeout: Duration) -> SourceSet {
    let mut set = SourceSet::default();
    let browsed = match nearby_browse(timeout) {
        Ok(browsed) => browsed,
        Err(problem) => {
            set.problems.push(problem);
            return set;
        }
    };
    set.extend(connect_peers(&browsed.peers));
    if let Some(problem) = ignored_peers(browsed.ignored) {
        set.problems.push(problem);
    }
    set
}

/// The problem saying `ignored` computers nearby were left out, past the
/// [`MAX_PEERS`](crate::lan::discover::MAX_PEERS) used; None when none were.
pub fn ignored_peers(ignored: usize) -> Option<Problem> {
    use crate::lan::discover::MAX_PEERS;
    (ignored > 0).then(|| {
        Problem::about(
            ProblemKind::Other,
            "computers nearby",
            None,
            format!(
                "{ignored} more computers nearby advertise updates; only the {MAX_PEERS} with \
                 the newest summaries are used"
            ),
        )
    })
}

/// Connects to computers found nearby, in parallel, each as a [`SourceKind::Lan`] source;
/// those that refuse or serve no summary become [`ProblemKind::Unavailable`] problems.
pub fn connect_peers(peers: &[crate::lan::discover::Peer]) -> SourceSet {
    let mut set = SourceSet::default();
    let connected = parallel::map(peers, 8, |peer| {
        HttpSource::connect(
            &peer.url,
            SourceKind::Lan,
            Some(peer.name.clone()),
            &CancelToken::new(),
        )
    });
    for (peer, result) in peers.iter().zip(connected) {
        match result {
            Ok(source) => set.extend(SourceSet {
                sources: vec![Arc::new(source)],
                problems: Vec::new(),
            }),
            Err(error) => {
                tracing::info!(url = %peer.url, error = %crate::causes::Causes(&error), "dropping a computer nearby");
                let origin =
                    SourceInfo::new(SourceKind::Lan, peer.url.as_str(), Some(peer.name.clone()));
                let (kind, advice) = match error {
                    FetchError::Busy { .. } => (
                        ProblemKind::Busy,
                        "it can be asked again in a moment, or another computer that has the \
                         same updates",
                    ),
                    _ => (
                        ProblemKind::Unavailable,
                        "updates from it are not listed; it may have stopped serving",
                    ),
                };
                set.problems.push(Problem::on_source(
                    kind,
                    &origin,
                    None,
                    format!("{}: {advice}", Causes(&error)),
                ));
            }
        }
    }
    set
}

/// The upstream servers of the targets' remotes: every `http://` or `https://` `url` of an
/// enabled remote some installed ref comes from, each connected to (its summary fetched) in
/// parallel. Servers that have not answered within `timeout` are left out, as problems.
pub fn upstream(targets: &[Target], timeout: Duration) -> SourceSet {
    let mut urls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for target in targets {
        for remote in &target.remotes {
            let used = target
                .installed
                .iter()
                .any(|i| i.remote.as_deref() == Some(remote.name.as_str()));
            let Some(url) = remote.url.as_deref().map(str::trim) else {
                continue;
            };
            if remote.disabled || !used {
                continue;
            }
            if url.starts_with("http://") || url.starts_with("https://") {
                urls.entry(url.to_owned())
                    .or_default()
                    .insert(remote.name.clone());
            }
        }
    }
    let (sender, receiver) = mpsc::channel();
    for (url, remotes) in &urls {
        let sender = sender.clone();
        let url = url.clone();
        let label = remotes.iter().cloned().collect::<Vec<_>>().join(", ");
        // Detached: a server that hangs past the deadline is abandoned, not waited for.
        let spawned = std::thread::Builder::new()
            .name("ferry-upstream".into())
            .spawn(move || {
                let result = HttpSource::connect(
                    &url,
                    SourceKind::Upstream,
                    Some(label),
                    &CancelToken::new(),
                );
                let _ = sender.send((url, result));
            });
        if let Err(error) = spawned {
            tracing::warn!(error = %crate::causes::Causes(&error), "cannot start a thread to reach an upstream server");
        }
    }
    drop(sender);
    let deadline = Instant::now() + timeout;
    let mut answered: HashSet<String> = HashSet::new();
    let mut set = SourceSet::default();
    while answered.len() < urls.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((url, result)) = receiver.recv_timeout(left) else {
            break;
        };
        answered.insert(url.clone());
        match result {
            Ok(source) => set.sources.push(Arc::new(source)),
            Err(error) => set.problems.push(Problem::on_source(
                ProblemKind::Unavailable,
                &SourceInfo::new(SourceKind::Upstream, url, None),
                None,
                upstream_failure(&error),
            )),
        }
    }
    for url in urls.keys().filter(|url| !answered.contains(*url)) {
        set.problems.push(Problem::on_source(
            ProblemKind::Unavailable,
            &SourceInfo::new(SourceKind::Upstream, url.as_str(), None),
            None,
            format!(
                "{url} did not answer within {} seconds: updates from it are not listed; \
                 check the network connection, or use --offline",
                timeout.as_secs()
            ),
        ));
    }
    // Answers arrive in any order; list servers in a stable one.
    set.sources
        .sort_by(|a, b| a.info().location.cmp(&b.info().location));
    set
}

fn upstream_failure(error: &FetchError) -> String {
    format!(
        "{}: updates from it are not listed; check the network connection, or use --offline",
        Causes(error)
    )
}

/// A listing of this machine, and the sources it read.
#[derive(Debug, Clone, Default)]
pub struct MachineListing {
    /// The updates, each once, from its preferred source; its problems start with those of
    /// finding targets and opening sources.
    pub list: UpdateList,
    /// Every source that was opened and read, drives and servers alike.
    pub sources: Vec<SourceInfo>,
}

/// What `ferryctl list` shows without target options: the machine's default targets
/// ([`default_targets`]) against the drives of `records` and, as `options` say, the targets'
/// upstream servers and computers nearby. A drive that cannot be read here (mounted where
/// only root may look) counts with what the hook recorded on it ([`super::add_recorded`]).
/// Read-only; a person's own listing gives [`user_icon_cache`] as the icon cache.
pub fn list_machine(
    host: &HostPaths,
    records: &[DriveRecord],
    options: GatherOptions,
) -> MachineListing {
    let drives: Vec<DriveToOpen> = records.iter().map(DriveToOpen::recorded).collect();
    let gathered = gather(
        host,
        TargetChoice::MachineDefaults,
        open_drives(&drives),
        options,
    );
    let sources: Vec<SourceInfo> = gathered
        .sources
        .sources
        .iter()
        .map(|s| s.info().clone())
        .collect();
    let mut list = gathered.list;
    super::add_recorded(&mut list, records, &sources);
    MachineListing { list, sources }
}

/// Which targets [`gather`] resolves for.
#[derive(Debug)]
pub enum TargetChoice {
    /// [`default_targets`]: the machine's OS and every Flatpak installation that exists.
    MachineDefaults,
    /// Targets named by the caller (`--sysroot`, `--installation`, `--repo`). Collections the
    /// machine's other targets know are then not reported as unknown.
    Chosen(Vec<Target>),
}

/// How a listing looks beyond its targets and drives: the network, sizes, icons and keys.
/// The one set of options of [`gather`], [`gather_from`] and [`list_machine`].
#[derive(Debug, Clone)]
pub struct GatherOptions {
    /// Ask the targets' upstream servers, waiting this long for them all; None stays offline.
    pub upstream: Option<Duration>,
    /// Browse for computers nearby this long ([`nearby`]), while upstream servers are asked.
    pub nearby: Option<Duration>,
    /// See [`ResolveOptions::quick`](super::ResolveOptions::quick).
    pub quick: bool,
    /// See [`ResolveOptions::icon_cache`](super::ResolveOptions::icon_cache).
    pub icon_cache: Option<PathBuf>,
    /// The machine's keys: the same value must reach the install that follows, so the
    /// listing and the pull check commits against the same keys.
    pub trust_roots: TrustRoots,
}

impl GatherOptions {
    /// Drives and named sources only, with sizes measured; no icons.
    pub fn offline(trust_roots: TrustRoots) -> Self {
        Self {
            upstream: None,
            nearby: None,
            quick: false,
            icon_cache: None,
            trust_roots,
        }
    }

    /// Drives only, with the sizes commits record: what can be shown at once.
    pub fn offline_quick(trust_roots: TrustRoots) -> Self {
        Self {
            quick: true,
            ..Self::offline(trust_roots)
        }
    }

    /// Also the remotes' own servers ([`UPSTREAM_TIMEOUT`]) and computers nearby
    /// ([`NEARBY_TIMEOUT`]).
    pub fn online(trust_roots: TrustRoots) -> Self {
        Self {
            upstream: Some(UPSTREAM_TIMEOUT),
            nearby: Some(NEARBY_TIMEOUT),
            ..Self::offline(trust_roots)
        }
    }

    /// App icons copied to `icon_cache`.
    pub fn with_icon_cache(self, icon_cache: Option<PathBuf>) -> Self {
        Self { icon_cache, ..self }
    }
}

/// Targets, the sources that were opened, and the resolution over them.
#[derive(Debug)]
pub struct Gathered {
    /// The installation targets looked at.
    pub targets: Vec<Target>,
    /// `sources` as given, plus upstream servers; their problems are in `list.problems`.
    pub sources: SourceSet,
    /// Problems of finding targets and opening sources come first.
    pub list: UpdateList,
}

/// Pause between looks while computers nearby are busy ([`gather_nearby`]), before a
/// spread of up to as long again.
const BUSY_PAUSE: Duration = Duration::from_millis(500);
/// How often [`gather_nearby`] browses again for computers that appeared meanwhile; between
/// browses it asks again only those it found.
const REBROWSE_EVERY: Duration = Duration::from_secs(30);

/// What computers nearby offer this machine's default targets, for an unattended install,
/// browsing for `timeout`. While nothing is on offer but some computer answered that it is
/// busy sharing with others, asks the computers found again after a short pause, for up to
/// `patience` or until `cancel`: in a room where every computer shares what it installed, a
/// turned-away computer soon finds one that has finished.
pub fn gather_nearby(
    host: &HostPaths,
    options: &GatherOptions,
    timeout: Duration,
    patience: Duration,
    cancel: &CancelToken,
) -> Gathered {
    let until = Instant::now() + patience;
    let mut browsed_at = Instant::now();
    let mut browsed = nearby_browse(timeout);
    loop {
        let mut found = match &browsed {
            Ok(peers) => connect_peers(&peers.peers),
            Err(problem) => SourceSet {
                sources: Vec::new(),
                problems: vec![problem.clone()],
            },
        };
        if let Some(problem) = browsed.as_ref().ok().and_then(|b| ignored_peers(b.ignored)) {
            found.problems.push(problem);
        }
        let mut once = options.clone();
        once.nearby = None;
        let gathered = gather(host, TargetChoice::MachineDefaults, found, once);
        let busy = gathered
            .list
            .problems
            .iter()
            .filter(|problem| problem.kind == ProblemKind::Busy)
            .count();
        if busy == 0 || !gathered.list.updates.is_empty() || Instant::now() >= until {
            return gathered;
        }
        tracing::info!(
            busy,
            "computers nearby are busy sharing; asking again shortly"
        );
        // A spread, so that the computers turned away do not all come back at once.
        let pause = BUSY_PAUSE + BUSY_PAUSE.mul_f64(rand::random::<f64>());
        let resume = Instant::now() + pause;
        while Instant::now() < resume {
            if cancel.is_cancelled() {
                return gathered;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if browsed_at.elapsed() >= REBROWSE_EVERY {
            browsed_at = Instant::now();
            browsed = nearby_browse(timeout);
        }
    }
}

/// Browses for computers nearby, or the problem saying why it could not.
fn nearby_browse(timeout: Duration) -> Result<crate::lan::discover::Browsed, Problem> {
    crate::lan::discover::browse(timeout).map_err(|error| {
        Problem::about(
            ProblemKind::Unavailable,
            "computers nearby",
            None,
            format!(
                "{}: computers nearby are not listed; check that the network is up",
                Causes(&error)
            ),
        )
    })
}

/// The one way to list updates: chooses the targets, adds their upstream servers (unless
/// offline) to `sources` (drives and computers nearby the caller opened) and resolves.
pub fn gather(
    host: &HostPaths,
    targets: TargetChoice,
    mut sources: SourceSet,
    options: GatherOptions,
) -> Gathered {
    let mut problems: Vec<Problem> = Vec::new();
    let (targets, known_collections) = match targets {
        TargetChoice::MachineDefaults => {
            let found = default_targets(host);
            problems.extend(found.errors.iter().map(|e| e.to_problem()));
            (found.targets, BTreeSet::new())
        }
        TargetChoice::Chosen(targets) => (targets, machine_collections(host)),
    };
    // Browsing takes its whole timeout; it runs while upstream servers answer.
    let browse = options.nearby.filter(|_| {
        let worth = peers_could_offer(&targets);
        if !worth {
            tracing::debug!(
                "no installed ref has a collection ID; not looking for computers nearby"
            );
        }
        worth
    });
    let browsing = browse.and_then(|timeout| {
        std::thread::Builder::new()
            .name("ferry-nearby".into())
            .spawn(move || nearby(timeout))
            .map_err(|error| tracing::warn!(error = %crate::causes::Causes(&error), "cannot start looking for computers nearby"))
            .ok()
    });
    if let Some(timeout) = options.upstream {
        sources.extend(upstream(&targets, timeout));
    }
    if let Some(browsing) = browsing {
        match browsing.join() {
            Ok(found) => sources.extend(found),
            Err(_) => tracing::warn!("looking for computers nearby failed"),
        }
    }
    problems.append(&mut sources.problems);
    let resolve_options = super::ResolveOptions {
        quick: options.quick,
        icon_cache: options.icon_cache,
        known_collections,
        trust_roots: options.trust_roots,
        // A person's listing always shows what else the drives carry.
        available: true,
    };
    let mut list = super::resolve(&targets, &sources.sources, &resolve_options);
    problems.append(&mut list.problems);
    list.problems = problems;
    Gathered {
        targets,
        sources,
        list,
    }
}

/// Where updates may come from besides the targets themselves, as a command line or the
/// kiosk policy names them.
#[derive(Debug, Clone, Copy)]
pub struct SourceOptions<'a> {
    /// Drives, repositories and URLs of computers nearby (`--from`).
    pub named: &'a [String],
    /// Leave the network out: the remotes' own servers, and computers nearby.
    pub offline: bool,
    /// The named sources and nothing else: no recorded drives, no network (`--only-from`,
    /// the kiosk's `kiosk-sources = inserted-drive`).
    pub only_named: bool,
}

/// Opens the drives recorded under `run_dir` (unless `from.only_named`) and the named
/// sources, then lists updates for `targets` ([`gather`]).
pub fn gather_from(
    host: &HostPaths,
    run_dir: &Path,
    targets: TargetChoice,
    from: SourceOptions<'_>,
    icon_cache: Option<PathBuf>,
    trust_roots: &TrustRoots,
) -> Gathered {
    let mut set = if from.only_named {
        SourceSet::default()
    } else {
        recorded_drives(run_dir)
    };
    set.extend(named(from.named));
    let network = !from.offline && !from.only_named;
    let options = if network {
        GatherOptions::online(trust_roots.clone())
    } else {
        GatherOptions::offline(trust_roots.clone())
    }
    .with_icon_cache(icon_cache);
    gather(host, targets, set, options)
}

/// Whether computers nearby could offer anything for `targets`: a peer's refs count only
/// for installed refs bound to a collection ID (a remote's own server needs none).
pub(crate) fn peers_could_offer(targets: &[Target]) -> bool {
    targets
        .iter()
        .flat_map(|target| &target.installed)
        .any(|installed| installed.collection_id.is_some())
}

/// Collection IDs of every remote configured on this machine: the booted OS's repository and
/// every Flatpak installation, read from their configuration only.
pub fn machine_collections(host: &HostPaths) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut add_repo = |repo: &Path| {
        if let Ok(opened) = Repo::open(repo) {
            for remote in opened.config().remotes() {
                if let Some(id) = remote.collection_id().filter(|id| !id.is_empty()) {
                    found.insert(id.to_owned());
                }
            }
        }
    };
    if let Some(sysroot) = host.os_target_sysroot() {
        add_repo(&sysroot.join("ostree/repo"));
    }
    let (mut installations, _) = flatpak::system_installations(&host.flatpak);
    installations.push(flatpak::user_installation(&host.flatpak));
    for installation in &installations {
        add_repo(&installation.repo());
    }
    if let Some(sysroot) = host.os_target_sysroot() {
        found.extend(remotes_d_collections(&sysroot.join("etc/ostree/remotes.d")));
    }
    found
}

/// Collection IDs of the remotes defined in `dir/*.conf`.
fn remotes_d_collections(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.filter_map(Result::ok).take(1024) {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "conf") {
            continue;
        }
        let Ok(text) = read_bounded_text(&path, 1024 * 1024) else {
            continue;
        };
        let Ok(keyfile) = KeyFile::parse(&text) else {
            continue;
        };
        let groups: Vec<String> = keyfile.groups().map(str::to_owned).collect();
        for group in groups.iter().filter(|g| g.starts_with("remote \"")) {
            if let Ok(Some(id)) = keyfile.get(group, "collection-id") {
                if !id.is_empty() {
                    found.insert(id);
                }
            }
        }
    }
    found
}

fn read_bounded_text(path: &Path, max: u64) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let mut text = String::new();
    file.take(max)
        .read_to_string(&mut text)
        .map_err(|error| error.to_string())?;
    Ok(text)
}

/// Where a listing run by a person copies app icons: `$XDG_CACHE_HOME/ferry/icons`, else
/// `~/.cache/ferry/icons`.
pub fn user_icon_cache() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(cache.join("ferry/icons"))
}

/// The drive records in `<run_dir>/drives/*.json`, sorted by file name, each with its sources
/// and problems marked as its own ([`DriveRecord::mark_sources`]), and the problems of those
/// that cannot be read.
pub fn drive_records(run_dir: &Path) -> (Vec<DriveRecord>, Vec<Problem>) {
    let dir = run_dir.join("drives");
    let mut problems = Vec::new();
    let paths = match DriveRecord::paths_in(&dir) {
        Ok(paths) => paths,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return (Vec::new(), problems)
        }
        Err(error) => {
            problems.push(Problem::about(
                ProblemKind::Unreadable,
                dir.display().to_string(),
                None,
                format!("cannot list the drive records: {error}"),
            ));
            return (Vec::new(), problems);
        }
    };
    let mut records = Vec::new();
    for path in paths {
        match DriveRecord::read(&path) {
            Ok(mut record) => {
                record.mark_sources();
                records.push(record);
            }
            Err(error) => problems.push(Problem::about(
                ProblemKind::Unreadable,
                path.display().to_string(),
                None,
                crate::causes::text(&error),
            )),
        }
    }
    (records, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::RepoMode;
    use crate::schema::DRIVE_RECORD_VERSION;
    use crate::target::{BootState, FlatpakPaths};

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn machine_collections_come_from_every_installation_and_the_booted_os() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let root = dir.path();
        let user = root.join("user");
        Repo::init(&user.join("repo"), RepoMode::BareUserOnly, None).expect("user repo");
        let config = user.join("repo/config");
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str("[remote \"apps\"]\nurl=file:///x\ncollection-id=org.example.Apps\n");
        std::fs::write(&config, text).expect("config");
        let booted_root = root.join("booted");
        Repo::init(&booted_root.join("ostree/repo"), RepoMode::Bare, None).expect("os repo");
        write(
            &booted_root.join("etc/ostree/remotes.d/os.conf"),
            "[remote \"os\"]\nurl=https://example.org\ncollection-id=org.example.Os\n",
        );
        write(&root.join("ostree-booted"), "");
        let host = HostPaths {
            boot: BootState {
                ostree_booted: root.join("ostree-booted"),
                kernel_cmdline: root.join("cmdline"),
                staged_deployment: root.join("staged"),
                root: booted_root,
            },
            flatpak: FlatpakPaths {
                system_dir: root.join("system"),
                user_dir: user,
                config_dir: root.join("config"),
            },
            os_sysroot: None,
        };
        let found = machine_collections(&host);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["org.example.Apps".to_owned(), "org.example.Os".to_owned()]
        );
    }

    #[test]
    fn a_computer_nearby_that_refuses_is_a_problem_not_a_source() {
        // A port that was just free: nothing listens there, so connections are refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let peer = crate::lan::discover::Peer {
            name: "Ferry on gone".into(),
            url: format!("http://127.0.0.1:{port}/0"),
            summary_timestamp: Some(1),
        };
        let set = connect_peers(&[peer]);
        assert!(set.sources.is_empty());
        assert_eq!(set.problems.len(), 1, "{:#?}", set.problems);
        assert_eq!(set.problems[0].kind, ProblemKind::Unavailable);
        assert!(set.problems[0].source.contains("Ferry on gone"));
    }

    #[test]
    fn computers_nearby_past_the_cap_are_counted_in_a_problem() {
        assert_eq!(ignored_peers(0), None);
        let problem = ignored_peers(5).expect("a problem");
        assert!(
            problem.reason.starts_with("5 more computers nearby")
                && problem.reason.contains("only the 32 "),
            "{}",
            problem.reason
        );
    }

    #[test]
    fn drive_records_are_read_and_bad_ones_reported() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let drives = dir.path().join("drives");
        let record = DriveRecord {
            label: Some("KINGSTON".into()),
            ..DriveRecord::new("abc", "/media/k")
        };
        write(
            &drives.join("abc.json"),
            &serde_json::to_string(&record).expect("json"),
        );
        write(&drives.join("bad.json"), "{ not a record");
        write(&drives.join(".abc.json.tmp"), "partial");
        let future = serde_json::to_string(&DriveRecord {
            v: DRIVE_RECORD_VERSION + 1,
            ..DriveRecord::new("future", "/media/f")
        })
        .expect("json");
        write(&drives.join("future.json"), &future);
        let (records, problems) = drive_records(dir.path());
        assert_eq!(records, vec![record]);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].source.ends_with("bad.json"));
        // What failed, then why (the JSON error, from the record error's source), once.
        let reason = &problems[0].reason;
        assert!(
            reason.starts_with("it is not a drive record Ferry understands: "),
            "{reason}"
        );
        assert_eq!(reason.matches("line 1 column").count(), 1, "{reason}");
        assert!(problems[1].source.ends_with("future.json"));
        assert!(
            problems[1].reason.contains("install matching versions"),
            "{}",
            problems[1].reason
        );

        // A recorded drive whose mount is gone is a problem, not a failure.
        let set = recorded_drives(dir.path());
        assert!(set.sources.is_empty());
        assert!(set
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Unreadable
                && p.source.starts_with("KINGSTON")
                && p.drive() == Some("abc")));
    }
}
