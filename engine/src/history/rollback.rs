//! `ferryctl rollback`: the previous OS deployment becomes the default again.
//!
//! ostree 2022.7 (Debian 12) has no `ostree admin rollback` or `set-default`, so this does
//! with `ostree admin` what they do:
//! - an update staged for the next boot (a booted system) is dropped: `undeploy 0`; the
//!   first deployment, usually the booted one, is the default again;
//! - otherwise the previous deployment's commit is deployed again as the default, with its
//!   own origin and kernel arguments (`deploy --retain --origin-file --karg-none
//!   --karg-append`), and the old copy of it is removed (`undeploy`) unless it is the booted
//!   one. The newer deployment stays, as the one to go forward to. Its `/etc` is merged from
//!   the current default, as every `ostree admin deploy` does.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::deploy::{self, path_option, DeployError};
use crate::object::Checksum;
use crate::target::commit::read_commit;
use crate::target::sysroot::{BootState, Deployment, SysrootState};
use crate::target::TargetError;

use super::{record, HistoryAction, HistoryEntry, HistoryStatus};
use crate::schema::TargetKind;

/// Why a rollback cannot be done or failed.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The sysroot could not be read.
    #[error(transparent)]
    Sysroot(#[from] TargetError),
    /// The sysroot has one deployment only.
    #[error(
        "there is no previous version to go back to: sysroot {} has only one deployment",
        sysroot.display()
    )]
    NoPrevious {
        /// The sysroot.
        sysroot: PathBuf,
    },
    /// `ostree admin` failed.
    #[error("going back failed")]
    Deploy(#[from] DeployError),
    /// `ostree admin` succeeded but left another deployment as the default.
    #[error(
        "`ostree admin` finished, but the default deployment of {} is {found}, not {expected}",
        sysroot.display()
    )]
    NotDefault {
        /// The sysroot.
        sysroot: PathBuf,
        /// The commit that should be the default.
        expected: String,
        /// The commit that is.
        found: String,
    },
}

/// One side of a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The deployment's commit.
    pub commit: Checksum,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// The origin's `remote:ref`.
    pub refspec: Option<String>,
}

/// How the previous version becomes the default.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    /// `ostree admin undeploy 0` of the staged deployment.
    DropStaged,
    /// Deploy `previous` again; then undeploy its old copy at this index (after the new
    /// deployment is prepended), when it is not the booted one.
    Redeploy {
        stateroot: String,
        origin: PathBuf,
        kernel_args: Vec<String>,
        old_index: Option<usize>,
    },
}

/// What `ferryctl rollback` will do: from the default (or staged) version to the previous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPlan {
    /// The sysroot rolled back.
    pub sysroot: PathBuf,
    /// What is the default (or staged) version now.
    pub from: Version,
    /// The version going back to.
    pub to: Version,
    method: Method,
}

/// Looks at `sysroot`'s deployments and picks the previous one.
pub fn plan(sysroot: &Path, boot: &BootState) -> Result<RollbackPlan, RollbackError> {
    let state = SysrootState::load(sysroot, boot)?;
    let repo = sysroot.join("ostree/repo");
    let version_of = |commit: Checksum, refspec: Option<String>| Version {
        commit,
        version: read_commit(&repo, &commit).ok().and_then(|c| c.version),
        refspec,
    };
    let no_previous = || RollbackError::NoPrevious {
        sysroot: sysroot.to_owned(),
    };
    let default = state.deployments.first().ok_or_else(no_previous)?;
    if let Some(staged) = &state.staged {
        // Without the staged update the first deployment boots next. That is the booted one
        // unless another was made the default after booting.
        return Ok(RollbackPlan {
            sysroot: sysroot.to_owned(),
            from: version_of(staged.commit, default.refspec.clone()),
            to: version_of(default.commit, default.refspec.clone()),
            method: Method::DropStaged,
        });
    }
    let previous: &Deployment = state
        .deployments
        .iter()
        .skip(1)
        .find(|d| d.stateroot == default.stateroot)
        .ok_or_else(no_previous)?;
    Ok(RollbackPlan {
        sysroot: sysroot.to_owned(),
        from: version_of(default.commit, default.refspec.clone()),
        to: version_of(previous.commit, previous.refspec.clone()),
        method: Method::Redeploy {
            stateroot: previous.stateroot.clone(),
            origin: previous.origin_path(),
            kernel_args: previous.kernel_args.clone(),
            old_index: (!previous.booted).then_some(previous.index + 1),
        },
    })
}

/// Makes `plan.to` the default deployment, checks that it is, and records it in the journal
/// (failures too).
pub fn run(plan: &RollbackPlan, boot: &BootState) -> Result<(), RollbackError> {
    let outcome = apply(plan, boot);
    let mut entry = HistoryEntry {
        time: 0,
        action: HistoryAction::Rollback,
        status: if outcome.is_ok() {
            HistoryStatus::RolledBack
        } else {
            HistoryStatus::Failed
        },
        target: TargetKind::Os,
        installation: Some(plan.sysroot.display().to_string()),
        ref_name: plan
            .to
            .refspec
            .as_deref()
            .map(|refspec| refspec.rsplit_once(':').map_or(refspec, |(_, r)| r))
            .unwrap_or("")
            .to_owned(),
        name: None,
        from_commit: Some(plan.from.commit.to_hex()),
        to_commit: Some(plan.to.commit.to_hex()),
        from_version: plan.from.version.clone(),
        to_version: plan.to.version.clone(),
        sources: Vec::new(),
        message: String::new(),
        detail: outcome
            .as_ref()
            .err()
            .map(|error| crate::causes::text(error)),
    };
    entry.message = entry.describe();
    record(&entry);
    outcome
}

fn apply(plan: &RollbackPlan, boot: &BootState) -> Result<(), RollbackError> {
    let admin = |subcommand: &str| {
        let mut command = Command::new("ostree");
        command
            .args(["admin", subcommand])
            .arg(path_option("--sysroot", &plan.sysroot));
        command
    };
    match &plan.method {
        Method::DropStaged => {
            let mut undeploy = admin("undeploy");
            undeploy.arg("0");
            deploy::run(undeploy, "ostree")?;
            let state = SysrootState::load(&plan.sysroot, boot)?;
            let found = match state.staged {
                Some(staged) => Some(staged.commit),
                None => state.deployments.first().map(|d| d.commit),
            };
            check_default(plan, found)
        }
        Method::Redeploy {
            stateroot,
            origin,
            kernel_args,
            old_index,
        } => {
            let mut redeploy = admin("deploy");
            redeploy
                .arg(format!("--os={stateroot}"))
                .arg("--retain")
                .arg(path_option("--origin-file", origin))
                .arg("--karg-none");
            for karg in kernel_args {
                redeploy.arg(format!("--karg-append={karg}"));
            }
            redeploy.arg(plan.to.commit.to_hex());
            deploy::run(redeploy, "ostree")?;
            if let Some(index) = old_index {
                let mut undeploy = admin("undeploy");
                undeploy.arg(index.to_string());
                deploy::run(undeploy, "ostree")?;
            }
            let state = SysrootState::load(&plan.sysroot, boot)?;
            check_default(plan, state.deployments.first().map(|d| d.commit))
        }
    }
}

/// Fails unless `found`, what boots next, is the commit the plan went back to.
fn check_default(plan: &RollbackPlan, found: Option<Checksum>) -> Result<(), RollbackError> {
    if found == Some(plan.to.commit) {
        return Ok(());
    }
    Err(RollbackError::NotDefault {
        sysroot: plan.sysroot.clone(),
        expected: plan.to.commit.to_hex(),
        found: found.map_or_else(|| "none".to_owned(), |c| c.to_hex()),
    })
}
