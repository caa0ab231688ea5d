//! `ferryctl serve --repo DIR [--port N] [--address ADDR] [--no-advertise]`: serve an archive
//! repository read-only over HTTP (IPv6 and IPv4) to computers nearby, and advertise it with
//! DNS-SD.
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
use ferry_engine::serve::{ServeLimits, ServedRepo, REPO_INDEX};

use crate::i18n::trf;
use crate::signals;

/// How often the summary is checked for changes, to refresh the advertisement.
const SUMMARY_POLL: Duration = Duration::from_secs(2);
/// How often the server checks whether it was asked to stop.
const STOP_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The archive repository to serve (with a summary, as `ostree summary --update` writes).
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,

    /// The TCP port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// The address to listen on (and to advertise, unless it is 0.0.0.0 or ::); by default
    /// every IPv6 and IPv4 address.
    #[arg(long, value_name = "ADDR")]
    pub address: Option<IpAddr>,

    /// Do not advertise the repository on the local network (DNS-SD).
    #[arg(long)]
    pub no_advertise: bool,

    /// Connections open at once; at the cap a new one displaces the longest idle one.
    #[arg(long, value_name = "N", default_value_t = ServeLimits::default().max_connections)]
    pub max_connections: usize,

    /// Time a client has to send a whole request head (and an idle connection is kept).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// Time a connection may move no byte before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}

pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let served = ServedRepo::open(&args.repo)
        .with_context(|| format!("check the path given to --repo ({})", args.repo.display()))?;
    let advertisement = Advertisement::from_repo(served.path(), REPO_INDEX);
    let advertisement = match (advertisement, args.no_advertise) {
        (Ok(advertisement), _) => Some(advertisement),
        (Err(error), true) => {
            tracing::warn!(%error, "computers nearby will not list this repository");
            None
        }
        (Err(error), false) => {
            return Err(error).context("cannot advertise the repository");
        }
    };
    let stop = signals::install()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferry-serve")
        .enable_all()
        .build()
        .context("cannot start the server")?;
    runtime.block_on(serve(args, served, advertisement, stop))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve(
    args: ServeArgs,
    served: ServedRepo,
    advertisement: Option<Advertisement>,
    stop: CancelToken,
) -> anyhow::Result<()> {
    let listener = ferry_engine::serve::listen(args.address, args.port)
        .and_then(tokio::net::TcpListener::from_std)
        .with_context(|| {
            let address = args.address.map_or("*".to_owned(), |a| a.to_string());
            format!(
                "cannot listen on {address} port {}: choose another --port or --address",
                args.port
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let advertiser = match advertisement.filter(|_| !args.no_advertise) {
        Some(advertisement) => {
            let mut options = AdvertiseOptions::for_this_host(bound.port());
            if let Some(address) = args.address.filter(|a| !a.is_unspecified()) {
                options.addresses = vec![address];
            }
            let advertiser = Advertiser::start(&advertisement, options)
                .context("cannot advertise the repository on the local network")?;
            Some((Arc::new(advertiser), advertisement))
        }
        None => None,
    };

    let repo = served.path().to_owned();
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(trf("Serving {} at http://{}/\n", &[&repo.display(), &bound]).as_bytes());
    if let Some((advertiser, _)) = &advertiser {
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

    let refresher = advertiser.as_ref().map(|(advertiser, advertisement)| {
        tokio::spawn(refresh_advertisement(
            repo.clone(),
            Arc::clone(advertiser),
            advertisement.clone(),
        ))
    });
    let limits = ServeLimits {
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
    };
    let stopped = stop.clone();
    let stop_requested = async move {
        let mut ticks = tokio::time::interval(STOP_POLL);
        while !stopped.is_cancelled() {
            ticks.tick().await;
        }
        // Peers stop being told about this server before it stops answering.
        if let Some(refresher) = refresher {
            refresher.abort();
        }
        if let Some((advertiser, _)) = advertiser {
            let _ = tokio::task::spawn_blocking(move || advertiser.stop()).await;
        }
    };
    ferry_engine::serve::serve(listener, Arc::new(served), limits, stop_requested).await;
    Ok(())
}

/// Re-announces the TXT records when the summary changes (its time and refs are in them).
async fn refresh_advertisement(
    repo: PathBuf,
    advertiser: Arc<Advertiser>,
    mut current: Advertisement,
) {
    let summary = repo.join("summary");
    let stamp = |path: &Path| -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    let mut seen = stamp(&summary);
    let mut ticks = tokio::time::interval(SUMMARY_POLL);
    loop {
        ticks.tick().await;
        let now = stamp(&summary);
        if now == seen {
            continue;
        }
        seen = now;
        match Advertisement::from_repo(&repo, REPO_INDEX) {
            Ok(fresh) if fresh != current => {
                if let Err(error) = advertiser.refresh(&fresh) {
                    tracing::warn!(%error, "cannot refresh the advertisement");
                }
                current = fresh;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "keeping the previous advertisement"),
        }
    }
}
