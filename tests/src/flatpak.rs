//! Flatpak fixtures with the real `flatpak`: isolated installations, a runtime and an app made
//! by hand (no SDK needed), signed repositories with a collection ID, and drives written by
//! `flatpak create-usb` from a second installation.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::cmd::{opt_path, Tool};
use crate::error::{FixtureError, IoContext, Result};
use crate::generate::{generate_tree, GenSpec};
use crate::gpg::GpgKey;
use crate::ostree::{OstreeRepo, UsbDrive};

pub const APP_ID: &str = "org.example.App";
pub const APP_NAME: &str = "Example Greeter";
pub const APP_SUMMARY: &str = "Prints a greeting with its version";
pub const RUNTIME_ID: &str = "org.example.Platform";
pub const COLLECTION_ID: &str = "org.example.Apps";
pub const REMOTE: &str = "example";
pub const BRANCH: &str = "stable";

/// The machine's Flatpak architecture (`flatpak --default-arch`), e.g. `x86_64`.
pub fn default_arch() -> Result<String> {
    static ARCH: OnceLock<String> = OnceLock::new();
    if let Some(arch) = ARCH.get() {
        return Ok(arch.clone());
    }
    let arch = Tool::new("flatpak")
        .arg("--default-arch")
        .stdout()?
        .trim()
        .to_string();
    Ok(ARCH.get_or_init(|| arch).clone())
}

/// `app/ID/ARCH/BRANCH`.
pub fn app_ref(id: &str, branch: &str) -> Result<String> {
    Ok(format!("app/{id}/{}/{branch}", default_arch()?))
}

/// `runtime/ID/ARCH/BRANCH`.
pub fn runtime_ref(id: &str, branch: &str) -> Result<String> {
    Ok(format!("runtime/{id}/{}/{branch}", default_arch()?))
}

/// `appstream2/ARCH`.
pub fn appstream2_ref() -> Result<String> {
    Ok(format!("appstream2/{}", default_arch()?))
}

/// What `flatpak run` of an app staged from `spec` prints.
pub fn greeting(spec: &AppSpec) -> String {
    format!("Hello from {} {}", spec.id, spec.version)
}

/// An isolated Flatpak "machine": HOME, the XDG directories and the FLATPAK_* directories all
/// point into `root`, the way flatpak's own test suite isolates itself. Every command made
/// through it carries those variables.
#[derive(Debug, Clone)]
pub struct FlatpakEnv {
    pub root: PathBuf,
    vars: Vec<(&'static str, PathBuf)>,
}

impl FlatpakEnv {
    pub fn new(root: &Path) -> Result<FlatpakEnv> {
        let home = root.join("home");
        let vars: Vec<(&'static str, PathBuf)> = vec![
            ("HOME", home.clone()),
            ("XDG_DATA_HOME", home.join("share")),
            ("XDG_CACHE_HOME", home.join("cache")),
            ("XDG_CONFIG_HOME", home.join("config")),
            ("XDG_STATE_HOME", home.join("state")),
            ("XDG_RUNTIME_DIR", root.join("runtime")),
            ("FLATPAK_SYSTEM_DIR", root.join("system")),
            ("FLATPAK_SYSTEM_CACHE_DIR", root.join("system-cache")),
            ("FLATPAK_CONFIG_DIR", root.join("config")),
            ("FLATPAK_RUN_DIR", root.join("run")),
        ];
        for (_, dir) in &vars {
            fs::create_dir_all(dir).at("create directory", dir)?;
        }
        let runtime = root.join("runtime");
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700))
            .at("chmod 700", &runtime)?;
        Ok(FlatpakEnv {
            root: root.to_path_buf(),
            vars,
        })
    }

    /// The variables every command in this environment gets, `FLATPAK_FANCY_OUTPUT=0`
    /// included. Apply them to `ferryctl` to make it see this installation.
    pub fn vars(&self) -> Vec<(String, OsString)> {
        let mut vars: Vec<(String, OsString)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone().into_os_string()))
            .collect();
        vars.push(("FLATPAK_FANCY_OUTPUT".into(), "0".into()));
        vars
    }

    /// Any program, run inside this environment.
    pub fn command(&self, program: &str) -> Tool {
        Tool::new(program).envs(self.vars())
    }

    /// `flatpak` inside this environment.
    pub fn flatpak(&self) -> Tool {
        self.command("flatpak")
    }

    /// The per-user installation, `$XDG_DATA_HOME/flatpak`.
    pub fn user_installation(&self) -> PathBuf {
        self.root.join("home/share/flatpak")
    }

    /// The per-user installation's repository.
    pub fn user_repo(&self) -> OstreeRepo {
        OstreeRepo::open(&self.user_installation().join("repo"))
    }

    /// `flatpak --user remote-add --gpg-import=KEY NAME file://REPO`, with the collection ID
    /// set when given (which `create-usb` needs).
    pub fn remote_add(
        &self,
        name: &str,
        repo: &Path,
        key: &GpgKey,
        collection_id: Option<&str>,
    ) -> Result<()> {
        self.flatpak()
            .args(["--user", "remote-add"])
            .arg(opt_path("--gpg-import", &key.public_keyring))
            .arg(name)
            .arg(format!("file://{}", repo.display()))
            .run()?;
        if let Some(id) = collection_id {
            self.flatpak()
                .args(["--user", "remote-modify"])
                .arg(format!("--collection-id={id}"))
                .arg(name)
                .run()?;
        }
        Ok(())
    }

    /// Points the per-user remote `name` at `url` (`flatpak --user remote-modify --url`).
    pub fn set_remote_url(&self, name: &str, url: &str) -> Result<()> {
        self.flatpak()
            .args(["--user", "remote-modify"])
            .arg(format!("--url={url}"))
            .arg(name)
            .run()?;
        Ok(())
    }

    /// `flatpak --user install -y --noninteractive REMOTE REF...` plus `extra` options.
    pub fn install(&self, remote: &str, refs: &[&str], extra: &[&str]) -> Result<()> {
        self.flatpak()
            .args(["--user", "install", "-y", "--noninteractive"])
            .args(extra)
            .arg(remote)
            .args(refs)
            .run()?;
        Ok(())
    }

    /// `flatpak --user update -y --noninteractive` plus `extra` options and refs.
    pub fn update(&self, extra: &[&str]) -> Result<()> {
        self.flatpak()
            .args(["--user", "update", "-y", "--noninteractive"])
            .args(extra)
            .run()?;
        Ok(())
    }

    /// `flatpak --user run APP`: its standard output, trimmed.
    pub fn run(&self, app_id: &str) -> Result<String> {
        Ok(self
            .flatpak()
            .args(["--user", "run", app_id])
            .stdout()?
            .trim()
            .to_string())
    }

    /// `flatpak --user config --set languages LANGUAGES` (`de;fr`, `*all*`).
    pub fn set_languages(&self, languages: &str) -> Result<()> {
        self.flatpak()
            .args(["--user", "config", "--set", "languages", languages])
            .run()?;
        Ok(())
    }

    /// Sets the installation's languages to `languages`, then installs the locale extension
    /// `locale` from `remote` with those languages only (`--subpath=/de`), as a person
    /// speaking them would have it.
    pub fn install_languages(&self, remote: &str, locale: &str, languages: &[&str]) -> Result<()> {
        self.set_languages(&languages.join(";"))?;
        let subpaths: Vec<String> = languages
            .iter()
            .map(|language| format!("--subpath=/{language}"))
            .collect();
        let subpaths: Vec<&str> = subpaths.iter().map(String::as_str).collect();
        self.install(remote, &[locale], &subpaths)
    }

    /// The message file [`FlatpakRepo::publish_locale`] wrote for `language`, as deployed
    /// here of `app_id`'s locale extension; None when that language is not deployed.
    pub fn deployed_locale_text(&self, app_id: &str, language: &str) -> Result<Option<String>> {
        let locale = runtime_ref(&format!("{app_id}.Locale"), BRANCH)?;
        let path = self.user_installation().join(locale).join(format!(
            "active/files/{language}/share/{language}/LC_MESSAGES/{app_id}.mo"
        ));
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).at("read", &path),
        }
    }

    /// The active commit of an installed ref (`flatpak --user info --show-commit`).
    pub fn installed_commit(&self, name: &str) -> Result<String> {
        Ok(self
            .flatpak()
            .args(["--user", "info", "--show-commit", name])
            .stdout()?
            .trim()
            .to_string())
    }

    /// Installed refs (`flatpak --user list --columns=ref`), apps and runtimes.
    pub fn installed_refs(&self) -> Result<Vec<String>> {
        let out = self
            .flatpak()
            .args(["--user", "list", "--all", "--columns=ref"])
            .stdout()?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "Ref")
            .map(str::to_string)
            .collect())
    }

    /// `flatpak --user create-usb DRIVE REF...` (the remote must have a collection ID).
    pub fn create_usb(&self, drive: &Path, refs: &[&str]) -> Result<UsbDrive> {
        fs::create_dir_all(drive).at("create drive directory", drive)?;
        self.flatpak()
            .args(["--user", "create-usb"])
            .arg(drive)
            .args(refs)
            .run()?;
        Ok(UsbDrive {
            root: drive.to_path_buf(),
            repo: OstreeRepo::open(&drive.join(".ostree/repo")),
        })
    }
}

/// An app to stage: `files/bin/hello.sh` prints [`greeting`], and appstream data gives it a
/// name, summary, icon and release version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub id: String,
    pub branch: String,
    /// Printed by the app and used as the release version in its appstream data (`v1`, …).
    pub version: String,
    /// Branch of [`RUNTIME_ID`] the app needs.
    pub runtime_branch: String,
    pub name: String,
    /// Extra generated files under `files/share/payload`, for large updates.
    pub payload: Option<GenSpec>,
}

impl AppSpec {
    /// [`APP_ID`] on [`BRANCH`] at `version`, needing runtime branch [`BRANCH`].
    pub fn new(version: &str) -> AppSpec {
        AppSpec {
            id: APP_ID.to_string(),
            branch: BRANCH.to_string(),
            version: version.to_string(),
            runtime_branch: BRANCH.to_string(),
            name: APP_NAME.to_string(),
            payload: None,
        }
    }

    pub fn id(mut self, id: &str) -> Self {
        self.id = id.to_string();
        self
    }

    pub fn runtime_branch(mut self, branch: &str) -> Self {
        self.runtime_branch = branch.to_string();
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    pub fn payload(mut self, spec: GenSpec) -> Self {
        self.payload = Some(spec);
        self
    }
}

/// What [`FlatpakRepo::publish_locale`] writes for `language` in `version`.
pub fn locale_text(language: &str, version: &str) -> String {
    format!("messages in {language}, {version}\n")
}

/// Stages a runtime directory (`metadata` + `usr/`) with bash, coreutils' `ls`/`cat`/`echo`,
/// the libraries they link (found with `ldd`) and `ldconfig`, which `flatpak run` uses to
/// build the sandbox's ld.so.cache. `dir` must not exist.
pub fn stage_runtime(dir: &Path, id: &str, branch: &str) -> Result<PathBuf> {
    let arch = default_arch()?;
    let usr = dir.join("usr");
    for sub in ["usr/bin", "usr/lib"] {
        fs::create_dir_all(dir.join(sub)).at("create directory", dir.join(sub))?;
    }
    fs::create_dir_all(dir.join("files")).at("create directory", dir.join("files"))?;
    symlink("../lib", usr.join("lib64")).at("create symlink", usr.join("lib64"))?;
    fs::write(
        dir.join("metadata"),
        format!("[Runtime]\nname={id}\nruntime={id}/{arch}/{branch}\nsdk={id}/{arch}/{branch}\n"),
    )
    .at("write", dir.join("metadata"))?;
    let mut libraries = std::collections::BTreeSet::new();
    for program in ["bash", "ls", "cat", "echo"] {
        let path = which(program)?;
        copy_executable(&path, &usr.join("bin").join(program))?;
        libraries.extend(linked_libraries(&path)?);
    }
    for lib in libraries {
        let name = lib.file_name().ok_or_else(|| {
            FixtureError::Unexpected(format!("odd library path {}", lib.display()))
        })?;
        // `cp` follows the library's symlink chain to the real file, like the recipe.
        fs::copy(&lib, usr.join("lib").join(name)).at("copy library", &lib)?;
    }
    symlink("bash", usr.join("bin/sh")).at("create symlink", usr.join("bin/sh"))?;
    let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or_else(|| FixtureError::Requirement("ldconfig not found (libc-bin)".into()))?;
    copy_executable(ldconfig, &usr.join("bin/ldconfig"))?;
    Ok(dir.to_path_buf())
}

/// Stages an app directory (`metadata` + `files/`) from `spec`; `flatpak build-finish` runs
/// inside `builder`. `dir` must not exist.
pub fn stage_app(builder: &FlatpakEnv, dir: &Path, spec: &AppSpec) -> Result<PathBuf> {
    let arch = default_arch()?;
    let files = dir.join("files");
    let bin = files.join("bin");
    fs::create_dir_all(&bin).at("create directory", &bin)?;
    fs::write(
        dir.join("metadata"),
        format!(
            "[Application]\nname={id}\nruntime={RUNTIME_ID}/{arch}/{rt}\nsdk={RUNTIME_ID}/{arch}/{rt}\n",
            id = spec.id,
            rt = spec.runtime_branch
        ),
    )
    .at("write", dir.join("metadata"))?;
    let script = bin.join("hello.sh");
    fs::write(&script, format!("#!/bin/sh\necho \"{}\"\n", greeting(spec))).at("write", &script)?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).at("chmod", &script)?;

    // Appstream data that `flatpak build-update-repo` collects into the appstream branches.
    let xmls = files.join("share/app-info/xmls");
    let icons = files.join("share/app-info/icons/flatpak/64x64");
    fs::create_dir_all(&xmls).at("create directory", &xmls)?;
    fs::create_dir_all(&icons).at("create directory", &icons)?;
    let component = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<components version="0.8" origin="flatpak">
  <component type="desktop">
    <id>{id}.desktop</id>
    <name>{name}</name>
    <summary>{APP_SUMMARY}</summary>
    <description><p>A test app that prints its version.</p></description>
    <icon type="cached" height="64" width="64">{id}.png</icon>
    <bundle type="flatpak">app/{id}/{arch}/{branch}</bundle>
    <releases>
      <release timestamp="1700000000" version="{version}"/>
    </releases>
  </component>
</components>
"#,
        id = spec.id,
        name = spec.name,
        branch = spec.branch,
        version = spec.version
    );
    let xml_path = xmls.join(format!("{}.xml.gz", spec.id));
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(component.as_bytes())
        .at("compress", &xml_path)?;
    fs::write(&xml_path, gz.finish().at("compress", &xml_path)?).at("write", &xml_path)?;
    let icon_path = icons.join(format!("{}.png", spec.id));
    fs::write(&icon_path, icon_png(64)?).at("write", &icon_path)?;

    if let Some(payload) = &spec.payload {
        generate_tree(&files.join("share/payload"), payload)?;
    }
    builder
        .flatpak()
        .args(["build-finish", "--command=hello.sh"])
        .arg(dir)
        .run()?;
    Ok(dir.to_path_buf())
}

/// A signed Flatpak repository written by `flatpak build-export` and
/// `flatpak build-update-repo`.
#[derive(Debug, Clone)]
pub struct FlatpakRepo {
    pub repo: OstreeRepo,
    pub collection_id: String,
    pub key: GpgKey,
    /// Where staged app and runtime directories go.
    staging: PathBuf,
    /// The environment the build commands run in.
    builder: FlatpakEnv,
}

impl FlatpakRepo {
    /// A repository at `path` (created by the first export), staging and building under
    /// `staging`.
    pub fn new(
        path: &Path,
        staging: &Path,
        collection_id: &str,
        key: &GpgKey,
    ) -> Result<FlatpakRepo> {
        Ok(FlatpakRepo {
            repo: OstreeRepo::open(path),
            collection_id: collection_id.to_string(),
            key: key.clone(),
            staging: staging.to_path_buf(),
            builder: FlatpakEnv::new(&staging.join("builder"))?,
        })
    }

    /// `flatpak build-export [--runtime]` of a staged directory; returns the new commit.
    pub fn export(&self, staged: &Path, branch: &str, runtime: bool) -> Result<String> {
        let mut tool = self.builder.flatpak().arg("build-export");
        if runtime {
            tool = tool.arg("--runtime");
        }
        tool.arg(format!("--collection-id={}", self.collection_id))
            .args(self.key.sign_args())
            .args(["--no-update-summary", "--disable-sandbox"])
            .arg(&self.repo.path)
            .arg(staged)
            .arg(branch)
            .run()?;
        let metadata =
            fs::read_to_string(staged.join("metadata")).at("read", staged.join("metadata"))?;
        let name = metadata
            .lines()
            .find_map(|l| l.strip_prefix("name="))
            .ok_or_else(|| FixtureError::Unexpected(format!("no name= in {}", staged.display())))?;
        let exported = if runtime {
            runtime_ref(name, branch)?
        } else {
            app_ref(name, branch)?
        };
        self.repo.rev_parse(&exported)
    }

    /// `flatpak build-update-repo`, signed: summary, summary index and appstream branches.
    pub fn update_repo(&self) -> Result<()> {
        self.builder
            .flatpak()
            .arg("build-update-repo")
            .args(self.key.sign_args())
            .arg(&self.repo.path)
            .run()?;
        Ok(())
    }

    /// Stages and exports runtime [`RUNTIME_ID`] on `branch`, then updates the repo.
    pub fn publish_runtime(&self, branch: &str) -> Result<String> {
        let dir = unique_dir(&self.staging, &format!("runtime-{branch}"))?;
        let staged = stage_runtime(&dir, RUNTIME_ID, branch)?;
        let commit = self.export(&staged, branch, true)?;
        self.update_repo()?;
        Ok(commit)
    }

    /// Stages and exports `APP_ID.Locale`, the app's locale extension as flatpak-builder
    /// makes it, with one message file per language under `files/<language>/`, then
    /// updates the repo. Returns the ref and its commit.
    pub fn publish_locale(
        &self,
        app_id: &str,
        version: &str,
        languages: &[&str],
    ) -> Result<(String, String)> {
        let arch = default_arch()?;
        let id = format!("{app_id}.Locale");
        let dir = unique_dir(&self.staging, &format!("locale-{version}"))?;
        fs::create_dir_all(dir.join("files")).at("create directory", dir.join("files"))?;
        fs::write(
            dir.join("metadata"),
            format!("[Runtime]\nname={id}\n\n[ExtensionOf]\nref=app/{app_id}/{arch}/{BRANCH}\n"),
        )
        .at("write", dir.join("metadata"))?;
        for language in languages {
            let messages = dir.join(format!("files/{language}/share/{language}/LC_MESSAGES"));
            fs::create_dir_all(&messages).at("create directory", &messages)?;
            let file = messages.join(format!("{app_id}.mo"));
            fs::write(&file, locale_text(language, version)).at("write", &file)?;
        }
        let commit = self.export(&dir, BRANCH, true)?;
        self.update_repo()?;
        Ok((runtime_ref(&id, BRANCH)?, commit))
    }

    /// Stages and exports an app, then updates the repo.
    pub fn publish_app(&self, spec: &AppSpec) -> Result<String> {
        let dir = unique_dir(&self.staging, &format!("app-{}-{}", spec.id, spec.version))?;
        let staged = stage_app(&self.builder, &dir, spec)?;
        let commit = self.export(&staged, &spec.branch, false)?;
        self.update_repo()?;
        Ok(commit)
    }
}

/// The usual Flatpak scene: a signed repository with a collection ID holding runtime
/// [`RUNTIME_ID`] and app [`APP_ID`] v1, and a per-user installation ("client") with remote
/// [`REMOTE`] and the app installed. Peers are further installations that write drives.
#[derive(Debug, Clone)]
pub struct FlatpakFixture {
    pub base: PathBuf,
    pub key: GpgKey,
    pub repo: FlatpakRepo,
    pub client: FlatpakEnv,
    /// Commit of app v1 as published.
    pub app_v1: String,
}

impl FlatpakFixture {
    /// Builds the scene under `base`.
    pub fn new(base: &Path) -> Result<FlatpakFixture> {
        let key = GpgKey::generate(&base.join("gnupg"), "Flatpak Test <flatpak@example.org>")?;
        let repo = FlatpakRepo::new(
            &base.join("repo"),
            &base.join("staging"),
            COLLECTION_ID,
            &key,
        )?;
        repo.publish_runtime(BRANCH)?;
        let app_v1 = repo.publish_app(&AppSpec::new("v1"))?;
        let client = FlatpakEnv::new(&base.join("client"))?;
        client.remote_add(REMOTE, &repo.repo.path, &key, Some(COLLECTION_ID))?;
        client.install(REMOTE, &[APP_ID], &[])?;
        Ok(FlatpakFixture {
            base: base.to_path_buf(),
            key,
            repo,
            client,
            app_v1,
        })
    }

    /// Publishes app `spec` to the repository; returns its commit.
    pub fn publish_app(&self, spec: &AppSpec) -> Result<String> {
        self.repo.publish_app(spec)
    }

    /// Publishes runtime branch `branch`; returns its commit.
    pub fn publish_runtime(&self, branch: &str) -> Result<String> {
        self.repo.publish_runtime(branch)
    }

    /// A second installation under `base/NAME` with the same remote (collection ID set).
    pub fn peer(&self, name: &str) -> Result<FlatpakEnv> {
        let peer = FlatpakEnv::new(&self.base.join(name))?;
        peer.remote_add(REMOTE, &self.repo.repo.path, &self.key, Some(COLLECTION_ID))?;
        Ok(peer)
    }

    /// A drive at `drive` written by `flatpak create-usb` from a fresh peer installation that
    /// installed `refs` (app IDs or full refs) as currently published. create-usb adds the
    /// runtimes the refs need and the appstream2 branch.
    pub fn drive_from_peer(
        &self,
        peer_name: &str,
        drive: &Path,
        refs: &[&str],
    ) -> Result<UsbDrive> {
        let peer = self.peer(peer_name)?;
        peer.install(REMOTE, refs, &[])?;
        peer.create_usb(drive, refs)
    }
}

fn unique_dir(parent: &Path, prefix: &str) -> Result<PathBuf> {
    fs::create_dir_all(parent).at("create directory", parent)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir_in(parent)
        .at("create directory in", parent)?;
    // Kept: the caller's base dir owns the cleanup. Staging needs a fresh, absent path.
    let path = dir.keep();
    fs::remove_dir(&path).at("remove", &path)?;
    Ok(path)
}

fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| FixtureError::Requirement(format!("{program} not found in PATH")))
}

fn copy_executable(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).at("copy", from)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).at("chmod", to)
}

/// Absolute library paths `ldd` reports for `binary`.
fn linked_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Tool::new("ldd").arg(binary).stdout()?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// A square PNG icon: a blue disc on transparent background.
fn icon_png(size: u32) -> Result<Vec<u8>> {
    let mut pixels = Vec::with_capacity((size * size * 4) as usize);
    let center = (size as f32 - 1.0) / 2.0;
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f32 - center, y as f32 - center);
            let inside = (dx * dx + dy * dy).sqrt() <= size as f32 / 2.0 - 2.0;
            pixels.extend_from_slice(if inside {
                &[0x35, 0x84, 0xe4, 0xff]
            } else {
                &[0, 0, 0, 0]
            });
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let encode = |e: png::EncodingError| FixtureError::Unexpected(format!("encode icon: {e}"));
    let mut writer = encoder.write_header().map_err(encode)?;
    writer.write_image_data(&pixels).map_err(encode)?;
    writer.finish().map_err(encode)?;
    Ok(out)
}
