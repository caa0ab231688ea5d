//! `ferryctl serve (--repo DIR | --system) [--port N] [--address ADDR] [--no-advertise]`:
//! serve repositories read-only over HTTP (IPv6 and IPv4) to computers nearby, as archive
//! repositories, and advertise each with DNS-SD.
//!
//! What is served, and the limits on clients, are the engine's ([`ferry_engine::serve`]).
//! Peers that pull from it verify every object and commit against their own keys.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ferry_engine::cancel::CancelToken;
use ferry_engine::lan::advertise::{AdvertiseOptions, Advertisement, Advertiser};
use ferry_engine::lan::DEFAULT_PORT;
use ferry_engine::serve::archive_view::ViewOptions;
use ferry_engine::serve::cache::{ConvertCache, CACHE_DIR_ENV, DEFAULT_CACHE_DIR};
use ferry_engine::serve::stats::ServeStats;
use ferry_engine::serve::{ServeLimits, ServedRepo};
use ferry_engine::target::{BootState, FlatpakPaths, SysrootState};

use crate::i18n::trf;
use crate::signals;

/// How often the summary is checked for changes, to refresh the advertisement.
const SUMMARY_POLL: Duration = Duration::from_secs(2);
/// How often the server checks whether it was asked to stop.
const STOP_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The repository to serve: an archive one (with a summary, as `ostree summary --update`
    /// writes), or a bare, bare-user or bare-user-only one, whose refs with a collection ID
    /// are served as an archive repository.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "system",
        conflicts_with = "system"
    )]
    pub repo: Option<PathBuf>,

    /// Serve this machine's OS repository at /0/ and its system Flatpak repository at /1/
    /// (what the ferry-serve service runs).
    #[arg(long)]
    pub system: bool,

    /// With --system: the sysroot whose repository (SYSROOT/ostree/repo) and deployments are
    /// served.
    #[arg(long, value_name = "DIR", default_value = "/", requires = "system")]
    pub sysroot: PathBuf,

    /// Where converted objects are cached (default $FERRY_SERVE_CACHE, else
    /// $CACHE_DIRECTORY/serve, else /var/cache/ferry/serve).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// The most bytes the cache of converted objects may hold, the oldest entries going
    /// first; 0 (default) keeps none: objects of 64 KiB and more are framed as stored deflate
    /// blocks while they are sent, which costs less than writing a cache file
    /// (1073741824 is 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub cache_size: u64,

    /// Exit after this many seconds without a request (for socket activation).
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<u64>,

    /// The TCP port to listen on; 0 picks a free one. Ignored when the service manager passes
    /// a listening socket (LISTEN_FDS).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// The address to listen on (and to advertise, unless it is 0.0.0.0 or ::); by default
    /// every IPv6 and IPv4 address.
    #[arg(long, value_name = "ADDR")]
    pub address: Option<IpAddr>,

    /// Do not advertise the repository on the local network (DNS-SD).
    #[arg(long, conflicts_with = "advertise_only")]
    pub no_advertise: bool,

    /// Only advertise the repositories, as served on --port by another process (the
    /// socket-activated service, which exits when idle), and serve nothing.
    #[arg(long, conflicts_with = "idle_exit")]
    pub advertise_only: bool,

    /// Connections open at once; at the cap a new one displaces the longest idle one.
    #[arg(long, value_name = "N", default_value_t = ServeLimits::default().max_connections)]
    pub max_connections: usize,

    /// Computers pulling at once; others are asked to come back shortly (503), and pull from
    /// a computer that has finished meanwhile. 0 lets everyone in. Default: 1 with
    /// `--system` (a room fans out: each round doubles the sources), 0 otherwise.
    #[arg(long, value_name = "N")]
    pub max_clients: Option<usize>,

    /// Time a client has to send a whole request head (and an idle connection is kept).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// Time a connection may move no byte before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}

/// A repository to serve and how to read what it advertises.
struct Wanted {
    path: PathBuf,
    options: ViewOptions,
}

/// The repositories `--repo` or `--system` names, in `ri` order.
fn wanted(args: &ServeArgs) -> anyhow::Result<Vec<Wanted>> {
    if let Some(repo) = &args.repo {
        return Ok(vec![Wanted {
            path: repo.clone(),
            options: ViewOptions::for_repo(repo),
        }]);
    }
    let mut found = Vec::new();
    let os_repo = args.sysroot.join("ostree/repo");
    if os_repo.join("config").is_file() {
        let options = match SysrootState::load(&args.sysroot, &BootState::default()) {
            Ok(state) => ViewOptions {
                remotes_dir: state.remotes_config_dir(),
                sysroot: Some(args.sysroot.clone()),
                installation: None,
            },
            Err(error) => {
                // The repository's refs are still served; only deployed commits are not.
                tracing::warn!(error = %ferry_engine::causes::Causes(&error), sysroot = %args.sysroot.display(),
                    "cannot read the deployments; serving the OS repository's refs only");
                ViewOptions::for_repo(&os_repo)
            }
        };
        found.push(Wanted {
            path: os_repo,
            options,
        });
    } else {
        tracing::info!(sysroot = %args.sysroot.display(), "no OS repository to serve");
    }
    let installation = FlatpakPaths::from_env().system_dir;
    let flatpak_repo = installation.join("repo");
    if flatpak_repo.join("config").is_file() {
        found.push(Wanted {
            path: flatpak_repo.clone(),
            options: ViewOptions {
                installation: Some(installation),
                ..ViewOptions::default()
            },
        });
    } else {
        tracing::info!(repo = %flatpak_repo.display(), "no system Flatpak repository to serve");
    }
    anyhow::ensure!(
        !found.is_empty(),
        "this machine has neither an OS repository ({}) nor a system Flatpak repository ({})",
        args.sysroot.join("ostree/repo").display(),
        flatpak_repo.display()
    );
    Ok(found)
}

/// The cache of converted objects: the chosen directory, else one this user can write.
fn open_cache(args: &ServeArgs) -> anyhow::Result<Arc<ConvertCache>> {
    let chosen = args
        .cache_dir
        .clone()
        .or_else(|| std::env::var_os(CACHE_DIR_ENV).map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("CACHE_DIRECTORY").map(|dir| PathBuf::from(dir).join("serve"))
        });
    let explicit = chosen.is_some();
    let dir = chosen.unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR));
    match ConvertCache::open(&dir, args.cache_size) {
        Ok(cache) => Ok(Arc::new(cache)),
        Err(error) if !explicit => {
            let fallback = ferry_engine::serve::cache::private_dir()
                .context("cannot create a private cache directory")?;
            tracing::warn!(error = %ferry_engine::causes::Causes(&error), dir = %dir.display(), fallback = %fallback.display(),
                "cannot use the cache directory");
            Ok(Arc::new(
                ConvertCache::open(&fallback, args.cache_size).with_context(|| {
                    format!("cannot create the cache directory {}", fallback.display())
                })?,
            ))
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot use the cache directory {}", dir.display()))
        }
    }
}

/// The day's count, in the cache directory (`ferryctl sharing status` reads it).
const STATS_FILE: &str = "today.json";

pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        !args.advertise_only || args.port != 0,
        "--advertise-only needs the --port the repositories are served on"
    );
    let mut cache = None;
    let mut served = Vec::new();
    for wanted in wanted(&args)? {
        let mode = ferry_engine::repo::Repo::open(&wanted.path)
            .map(|repo| repo.mode())
            .ok();
        if mode.is_some_and(|mode| mode != ferry_engine::repo::RepoMode::Archive) && cache.is_none()
        {
            cache = Some(open_cache(&args)?);
        }
        let repo = ServedRepo::open(&wanted.path, wanted.options, cache.clone())
            .with_context(|| format!("check the repository {}", wanted.path.display()))?;
        served.push(Arc::new(repo));
    }
    // What the service serves is counted for the Preferences switch ("fetched today"),
    // beside the cache of converted objects.
    let stats = if args.system && !args.advertise_only {
        let dir = match &cache {
            Some(cache) => cache.dir().to_path_buf(),
            None => open_cache(&args)?.dir().to_path_buf(),
        };
        Some(Arc::new(ServeStats::open(&dir.join(STATS_FILE))))
    } else {
        None
    };
    let mut advertisements = Vec::new();
    for (index, repo) in served.iter().enumerate() {
        let index = u16::try_from(index).context("too many repositories")?;
        match (repo.advertisement(index), args.no_advertise) {
            (Ok(advertisement), _) => advertisements.push(Some(advertisement)),
            (Err(error), true) => {
                tracing::warn!(error = %ferry_engine::causes::Causes(&error), "computers nearby will not list this repository");
                advertisements.push(None);
            }
            (Err(error), false) => {
                return Err(error).context("cannot advertise the repository");
            }
        }
    }
    let stop = signals::install()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferry-serve")
        .enable_all()
        .build()
        .context("cannot start the server")?;
    runtime.block_on(serve(args, served, advertisements, stats, stop))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The socket passed by the service manager, else a new one on --address and --port.
fn listener(args: &ServeArgs) -> anyhow::Result<tokio::net::TcpListener> {
    let activated = ferry_engine::serve::activation::activated_listener()
        .context("cannot use the socket passed by the service manager")?;
    match activated {
        Some(listener) => {
            tracing::info!("using the socket passed by the service manager");
            tokio::net::TcpListener::from_std(listener)
                .context("cannot use the socket passed by the service manager")
        }
        None => ferry_engine::serve::listen(args.address, args.port)
            .and_then(tokio::net::TcpListener::from_std)
            .with_context(|| {
                let address = args.address.map_or("*".to_owned(), |a| a.to_string());
                format!(
                    "cannot listen on {address} port {}: choose another --port or --address",
                    args.port
                )
            }),
    }
}

/// The instance name of repository `index`: the first one keeps the plain name.
fn instance_name(index: u16, port: u16) -> AdvertiseOptions {
    let mut options = AdvertiseOptions::for_this_host(port);
    if index > 0 {
        options.instance_name = format!("{} ({index})", options.instance_name);
    }
    options
}

async fn serve(
    args: ServeArgs,
    served: Vec<Arc<ServedRepo>>,
    advertisements: Vec<Option<Advertisement>>,
    stats: Option<Arc<ServeStats>>,
    stop: CancelToken,
) -> anyhow::Result<()> {
    let listener = if args.advertise_only {
        None
    } else {
        Some(listener(&args)?)
    };
    let bound = match &listener {
        Some(listener) => listener
            .local_addr()
            .context("cannot read the bound address")?,
        None => std::net::SocketAddr::new(
            args.address
                .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED.into()),
            args.port,
        ),
    };
    let mut advertisers = Vec::new();
    for (index, advertisement) in advertisements.into_iter().enumerate() {
        let Some(advertisement) = advertisement.filter(|_| !args.no_advertise) else {
            continue;
        };
        let index = u16::try_from(index).context("too many repositories")?;
        let mut options = instance_name(index, bound.port());
        if let Some(address) = args.address.filter(|a| !a.is_unspecified()) {
            options.addresses = vec![address];
        }
        let advertiser = Advertiser::start(&advertisement, options)
            .context("cannot advertise the repository on the local network")?;
        advertisers.push((
            Arc::new(advertiser),
            advertisement,
            Arc::clone(&served[usize::from(index)]),
        ));
    }

    let mut out = std::io::stdout().lock();
    for (index, repo) in served.iter().enumerate().filter(|_| listener.is_some()) {
        // The first repository is also served at `/`, which older peers ask for.
        let at = if index == 0 {
            bound.to_string()
        } else {
            format!("{bound}/{index}")
        };
        let _ = out.write_all(
            trf("Serving {} at http://{}/\n", &[&repo.path().display(), &at]).as_bytes(),
        );
    }
    for (advertiser, _, _) in &advertisers {
        let _ = out.write_all(
            trf(
                "Advertised on the local network as {}\n",
                &[&advertiser.fullname()],
            )
            .as_bytes(),
        );
    }
    let _ = out.flush();
    drop(out);

    let refreshers: Vec<_> = advertisers
        .iter()
        .map(|(advertiser, advertisement, repo)| {
            tokio::spawn(refresh_advertisement(
                Arc::clone(repo),
                Arc::clone(advertiser),
                advertisement.clone(),
            ))
        })
        .collect();
    let limits = ServeLimits {
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        idle_exit: args.idle_exit.map(Duration::from_secs),
        max_clients: match args.max_clients {
            Some(0) => None,
            Some(max) => Some(max),
            None if args.system => Some(1),
            None => None,
        },
    };
    let withdraw: Vec<Arc<Advertiser>> =
        advertisers.iter().map(|(a, _, _)| Arc::clone(a)).collect();
    // Taken once: on SIGINT or SIGTERM before the server stops, else when it stopped idle.
    let withdraw_all = move || async move {
        for refresher in refreshers {
            refresher.abort();
        }
        for advertiser in withdraw {
            let _ = tokio::task::spawn_blocking(move || advertiser.stop()).await;
        }
    };
    let withdraw_on_stop = Arc::new(tokio::sync::Mutex::new(Some(withdraw_all)));
    let on_stop = Arc::clone(&withdraw_on_stop);
    let stopped = stop.clone();
    let stop_requested = async move {
        let mut ticks = tokio::time::interval(STOP_POLL);
        while !stopped.is_cancelled() {
            ticks.tick().await;
        }
        // Peers stop being told about this server before it stops answering.
        if let Some(withdraw) = on_stop.lock().await.take() {
            withdraw().await;
        }
    };
    match listener {
        Some(listener) => {
            ferry_engine::serve::serve(listener, served, limits, stats, stop_requested).await;
        }
        None => stop_requested.await,
    }
    // Stopped on its own (idle): withdraw now.
    if let Some(withdraw) = withdraw_on_stop.lock().await.take() {
        withdraw().await;
    }
    Ok(())
}

/// Re-announces the TXT records when what is served changes (the summary's time and refs
/// are in them): a changed summary file, or changed refs of a viewed repository.
async fn refresh_advertisement(
    repo: Arc<ServedRepo>,
    advertiser: Arc<Advertiser>,
    mut current: Advertisement,
) {
    let summary = repo.path().join("summary");
    let stamp = |path: &Path| -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    let mut seen = stamp(&summary);
    let mut ticks = tokio::time::interval(SUMMARY_POLL);
    loop {
        ticks.tick().await;
        if repo.view().is_some() {
            let refreshing = Arc::clone(&repo);
            match tokio::task::spawn_blocking(move || refreshing.refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %ferry_engine::causes::Causes(&error), "keeping the previous advertisement")
                }
                Err(_) => continue,
            }
        } else {
            let now = stamp(&summary);
            if now == seen {
                continue;
            }
            seen = now;
        }
        match repo.advertisement(current.repo_index) {
            Ok(fresh) if fresh != current => {
                if let Err(error) = advertiser.refresh(&fresh) {
                    tracing::warn!(error = %ferry_engine::causes::Causes(&error), "cannot refresh the advertisement");
                }
                current = fresh;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %ferry_engine::causes::Causes(&error), "keeping the previous advertisement")
            }
        }
    }
}
