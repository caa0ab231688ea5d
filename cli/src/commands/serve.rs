//! `ferryctl serve --repo DIR [--port N] [--address ADDR] [--no-advertise]`: serve an archive
//! repository read-only over HTTP to computers nearby, and advertise it with DNS-SD.
//!
//! Only what a pull reads is served: `config`, `summary`, `summary.sig` and files under
//! `objects/`, `deltas/`, `delta-indexes/` and `refs/`; never a directory listing, and never
//! a file a symbolic link leads to outside the repository. The repository answers both at
//! `/` and at `/0/`, the path eos-updater's advertisement (`ri` = 0) points libostree to.
//! Peers that pull from it verify every object and commit against their own keys.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use ferry_engine::cancel::CancelToken;
use ferry_engine::lan::advertise::{AdvertiseOptions, Advertisement, Advertiser};
use ferry_engine::lan::DEFAULT_PORT;
use ferry_engine::repo::{Repo, RepoMode};
use tower_http::services::ServeDir;

use crate::i18n::trf;
use crate::signals;

/// The repository index advertised (`ri`), and the path prefix it is also served under.
const REPO_INDEX: u16 = 0;
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

    /// The address to listen on (and to advertise, unless it is 0.0.0.0 or ::).
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub address: IpAddr,

    /// Do not advertise the repository on the local network (DNS-SD).
    #[arg(long)]
    pub no_advertise: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let repo = open_archive(&args.repo)?;
    let advertisement = Advertisement::from_repo(&repo, REPO_INDEX);
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
    runtime.block_on(serve(args, repo, advertisement, stop))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The canonical path of `dir`, which must be an archive repository.
fn open_archive(dir: &Path) -> anyhow::Result<PathBuf> {
    let opened = Repo::open(dir).with_context(|| {
        format!(
            "cannot open the repository {}: check the path given to --repo",
            dir.display()
        )
    })?;
    if opened.config().mode != RepoMode::Archive {
        bail!(
            "{} is a {} repository; only archive repositories can be served: copy it into one \
             with `ostree init --mode=archive` and `ostree pull-local`",
            dir.display(),
            opened.config().mode
        );
    }
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

async fn serve(
    args: ServeArgs,
    repo: PathBuf,
    advertisement: Option<Advertisement>,
    stop: CancelToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.address, args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{}: choose another --port or --address",
                args.address, args.port
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let advertiser = match advertisement.filter(|_| !args.no_advertise) {
        Some(advertisement) => {
            let mut options = AdvertiseOptions::for_this_host(bound.port());
            if !args.address.is_unspecified() {
                options.addresses = vec![args.address];
            }
            let advertiser = Advertiser::start(&advertisement, options)
                .context("cannot advertise the repository on the local network")?;
            Some((Arc::new(advertiser), advertisement))
        }
        None => None,
    };

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
    let app = router(repo);
    let stopped = stop.clone();
    let withdrawn = advertiser
        .as_ref()
        .map(|(advertiser, _)| Arc::clone(advertiser));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let mut ticks = tokio::time::interval(STOP_POLL);
            while !stopped.is_cancelled() {
                ticks.tick().await;
            }
            tracing::info!("stopping the server");
            // Peers stop being told about this server before it stops answering.
            if let Some(refresher) = refresher {
                refresher.abort();
            }
            if let Some(advertiser) = withdrawn {
                let _ = tokio::task::spawn_blocking(move || advertiser.stop()).await;
            }
        })
        .await
        .context("the server failed")?;
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

/// The repository at `/` and at `/<REPO_INDEX>/`, each request checked by [`guard`].
fn router(repo: PathBuf) -> Router {
    let files = ServeDir::new(&repo).append_index_html_on_directories(false);
    let repo_routes = Router::new()
        .fallback_service(files)
        .layer(axum::middleware::from_fn_with_state(Arc::new(repo), guard));
    Router::new()
        .nest_service(&format!("/{REPO_INDEX}"), repo_routes.clone())
        .fallback_service(repo_routes)
}

/// Lets through only GET and HEAD of a servable file; logs every request.
async fn guard(State(repo): State<Arc<PathBuf>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Below `/0` the path is relative to the nest; the log shows what was asked for.
    let asked = request
        .extensions()
        .get::<OriginalUri>()
        .map(|original| original.path().to_owned())
        .unwrap_or_else(|| path.clone());
    let allowed =
        (method == Method::GET || method == Method::HEAD) && servable(&repo, &path).is_some();
    let response = if allowed {
        next.run(request).await
    } else {
        StatusCode::NOT_FOUND.into_response()
    };
    tracing::info!(%method, path = %asked, status = response.status().as_u16(), "request");
    response
}

/// The file `uri_path` names, when it is one a pull may read and it lies inside the
/// repository once every symbolic link is resolved.
fn servable(repo: &Path, uri_path: &str) -> Option<PathBuf> {
    let relative = uri_path.strip_prefix('/')?;
    // Percent-escapes are refused rather than decoded: no OSTree path needs one, and the
    // file checked must be the file served.
    if relative.is_empty() || relative.contains(['%', '\\', '\0']) {
        return None;
    }
    let segments: Vec<&str> = relative.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return None;
    }
    let allowed = matches!(
        segments.as_slice(),
        ["config" | "summary" | "summary.sig"]
            | ["objects" | "deltas" | "delta-indexes" | "refs", _, ..]
    );
    if !allowed {
        return None;
    }
    let resolved = repo.join(relative).canonicalize().ok()?;
    if !resolved.starts_with(repo) || !resolved.is_file() {
        return None;
    }
    Some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pull_paths_inside_the_repository_are_servable() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("objects/ab")).expect("mkdir");
        std::fs::create_dir_all(repo.join("refs/heads")).expect("mkdir");
        std::fs::write(repo.join("config"), "[core]\n").expect("write");
        std::fs::write(repo.join("objects/ab/cd.commit"), "x").expect("write");
        std::fs::write(repo.join("tmp-secret"), "x").expect("write");
        std::fs::write(dir.path().join("outside"), "x").expect("write");
        std::os::unix::fs::symlink(dir.path().join("outside"), repo.join("refs/heads/escape"))
            .expect("symlink");
        std::os::unix::fs::symlink(repo.join("config"), repo.join("refs/heads/inside"))
            .expect("symlink");
        let repo = repo.canonicalize().expect("canonical");

        assert!(servable(&repo, "/config").is_some());
        assert!(servable(&repo, "/objects/ab/cd.commit").is_some());
        assert!(servable(&repo, "/refs/heads/inside").is_some());
        for refused in [
            "/",
            "/objects",
            "/objects/ab",
            "/objects/ab/",
            "/tmp-secret",
            "/refs/heads/escape",
            "/objects/../config",
            "/objects/ab/../../tmp-secret",
            "/objects/ab/cd%2ecommit",
            "/summary",
            "/config/x",
        ] {
            assert!(servable(&repo, refused).is_none(), "{refused} was servable");
        }
    }
}
