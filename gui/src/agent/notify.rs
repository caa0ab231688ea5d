//! Desktop notifications: what a drive offers, why nothing can be installed from it, and how
//! an installation ended. The handle of each notification is kept alive by a task waiting
//! for its action, because an action only reaches a sender that is still connected.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_schema::{TargetKind, Update};
use notify_rust::{Hint, Notification, NotificationResponse, Timeout};
use tokio::sync::oneshot;

use crate::config::APP_ID;
use crate::i18n::{ntrf, tr, trf};
use crate::listing::{Listing, SourceGroup};
use crate::model::Outcome;

/// Key of the notification about how the last installation ended.
pub const RESULT_KEY: &str = "result";

/// What a person chose on a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationAction {
    Install,
    Show,
    Restart,
}

impl NotificationAction {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "install" => Some(Self::Install),
            "show" | "default" => Some(Self::Show),
            "restart" => Some(Self::Restart),
            _ => None,
        }
    }
}

/// Everything a notification says, independent of how it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationContent {
    pub summary: String,
    pub body: String,
    /// `(key, label)` pairs, in order.
    pub actions: Vec<(String, String)>,
    /// Changes whenever the content should be shown again.
    pub fingerprint: String,
}

/// The notification for a drive, if it deserves one.
pub fn for_drive(group: &SourceGroup) -> Option<NotificationContent> {
    let drive = group.drive.as_ref()?;
    if drive.installing_by_system {
        return None;
    }
    let label = group.title.as_str();
    if !group.updates.is_empty() {
        let mut ids: Vec<String> = group
            .updates
            .iter()
            .map(|update| format!("{}@{}", update.id, update.commit))
            .collect();
        ids.sort();
        return Some(NotificationContent {
            // Translators: notification title; {label} is the drive's name.
            summary: trf("Updates on {label}", &[("label", &label)]),
            body: updates_body(group),
            actions: vec![
                ("install".into(), tr("Install")),
                ("show".into(), tr("Show")),
            ],
            fingerprint: format!("updates:{}", ids.join(",")),
        });
    }
    let first = group.problems.first()?;
    let more = group.problems.len() - 1;
    let body = if more == 0 {
        first.reason.clone()
    } else {
        // Translators: {reason} is one sentence; {n} counts the other problems.
        ntrf(
            "{reason} And {n} more problem.",
            "{reason} And {n} more problems.",
            more as u64,
            &[("reason", &first.reason)],
        )
    };
    let mut reasons: Vec<&str> = group.problems.iter().map(|p| p.reason.as_str()).collect();
    reasons.sort_unstable();
    Some(NotificationContent {
        // Translators: notification title; {label} is the drive's name.
        summary: trf(
            "Nothing can be installed from {label}",
            &[("label", &label)],
        ),
        body,
        actions: vec![("show".into(), tr("Show"))],
        fingerprint: format!("problems:{}", reasons.join("\n")),
    })
}

/// "2 apps and a system update", "A system update", "3 app updates", "4 updates".
pub fn updates_body(group: &SourceGroup) -> String {
    // A runtime that comes along because an app needs it is part of that app's update.
    let counted: Vec<&Update> = group
        .shown()
        .into_iter()
        .map(|(update, _)| update)
        .collect();
    let os = counted
        .iter()
        .filter(|update| update.target == TargetKind::Os)
        .count() as u64;
    let apps = counted
        .iter()
        .filter(|update| {
            update.target == TargetKind::Flatpak && update.ref_name.starts_with("app/")
        })
        .count() as u64;
    let other = counted.len() as u64 - os - apps;
    match (os, apps, other) {
        (0, 0, 0) => String::new(),
        (1, 0, 0) => tr("A system update"),
        (1, apps, 0) => ntrf(
            "{n} app and a system update",
            "{n} apps and a system update",
            apps,
            &[],
        ),
        (0, apps, 0) => ntrf("{n} app update", "{n} app updates", apps, &[]),
        (os, apps, other) => ntrf("{n} update", "{n} updates", os + apps + other, &[]),
    }
}

/// How an installation ended, for a person who may not be looking at the window.
pub fn for_outcome(outcome: &Outcome) -> Option<NotificationContent> {
    let (summary, body, actions) = match outcome {
        Outcome::Cancelled => return None,
        Outcome::Done {
            restart_required: true,
            ..
        } => (
            tr("Restart to finish"),
            tr("The system update is ready. Restart the computer to start using it."),
            vec![
                ("restart".to_owned(), tr("Restart")),
                ("show".to_owned(), tr("Show")),
            ],
        ),
        Outcome::Done { installed, .. } => (
            tr("Updates installed"),
            ntrf(
                "{n} update was installed.",
                "{n} updates were installed.",
                *installed as u64,
                &[],
            ),
            vec![("show".to_owned(), tr("Show"))],
        ),
        Outcome::Failed {
            message, installed, ..
        } => (
            if *installed == 0 {
                tr("Updates could not be installed")
            } else {
                tr("Some updates could not be installed")
            },
            message.clone(),
            vec![("show".to_owned(), tr("Show"))],
        ),
    };
    Some(NotificationContent {
        fingerprint: format!("{summary}\n{body}"),
        summary,
        body,
        actions,
    })
}

type ActionHandler = Arc<dyn Fn(String, NotificationAction) + Send + Sync>;

struct Shown {
    fingerprint: String,
    /// Dropping it withdraws the notification.
    withdraw: Option<oneshot::Sender<()>>,
}

/// The notifications currently shown, by key (`drive:<id>`, [`RESULT_KEY`]).
pub struct Notifier {
    shown: HashMap<String, Shown>,
    on_action: ActionHandler,
}

impl Notifier {
    /// `on_action(key, action)` runs on a runtime thread when a person picks an action.
    pub fn new(on_action: impl Fn(String, NotificationAction) + Send + Sync + 'static) -> Self {
        Self {
            shown: HashMap::new(),
            on_action: Arc::new(on_action),
        }
    }

    /// Brings the drive notifications in line with the listing: new drives are announced,
    /// changed ones announced again, removed ones withdrawn.
    pub fn sync_drives(&mut self, listing: &Listing) {
        let mut wanted: HashMap<String, NotificationContent> = HashMap::new();
        for group in &listing.groups {
            if let (Some(id), Some(content)) = (group.drive_id(), for_drive(group)) {
                wanted.insert(format!("drive:{id}"), content);
            }
        }
        self.shown
            .retain(|key, _| !key.starts_with("drive:") || wanted.contains_key(key));
        let mut keys: Vec<&String> = wanted.keys().collect();
        keys.sort();
        for key in keys {
            let content = &wanted[key];
            self.show(key, content);
        }
    }

    /// Shows `content` under `key`, replacing what was there unless it says the same.
    pub fn show(&mut self, key: &str, content: &NotificationContent) {
        if self
            .shown
            .get(key)
            .is_some_and(|shown| shown.fingerprint == content.fingerprint)
        {
            return;
        }
        let (withdraw, withdrawn) = oneshot::channel();
        self.shown.insert(
            key.to_owned(),
            Shown {
                fingerprint: content.fingerprint.clone(),
                withdraw: Some(withdraw),
            },
        );
        let notification = build(content);
        let on_action = self.on_action.clone();
        let key = key.to_owned();
        relm4::spawn(async move {
            deliver(notification, key, withdrawn, on_action).await;
        });
    }

    /// Withdraws the notification; the same content will be shown again if asked.
    pub fn withdraw(&mut self, key: &str) {
        self.shown.remove(key);
    }

    /// Withdraws the notification because it was dealt with (its updates are being
    /// installed): the same content is not announced again.
    pub fn settle(&mut self, key: &str) {
        if let Some(shown) = self.shown.get_mut(key) {
            shown.withdraw.take();
        }
    }
}

fn build(content: &NotificationContent) -> Notification {
    let mut notification = Notification::new();
    notification
        .appname(&tr("Ferry"))
        .summary(&content.summary)
        .body(&content.body)
        .icon(APP_ID)
        .hint(Hint::DesktopEntry(APP_ID.to_owned()))
        .hint(Hint::Category("device.added".to_owned()))
        .hint(Hint::Resident(true))
        .timeout(Timeout::Never);
    for (key, label) in &content.actions {
        notification.action(key, label);
    }
    notification
}

async fn deliver(
    notification: Notification,
    key: String,
    withdrawn: oneshot::Receiver<()>,
    on_action: ActionHandler,
) {
    let handle = match notification.show_async().await {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, "cannot show a notification; is a notification server running?");
            return;
        }
    };
    tracing::info!(key, id = handle.id(), "notification shown");
    let mut chosen = None;
    tokio::select! {
        () = handle.wait_for_action_async(|response| {
            if let NotificationResponse::Action(action) = response {
                chosen = NotificationAction::from_key(action);
            } else if matches!(response, NotificationResponse::Default) {
                chosen = Some(NotificationAction::Show);
            }
        }) => {}
        _ = withdrawn => {
            tracing::info!(key, id = handle.id(), "withdrawing the notification");
            handle.close_async().await;
            return;
        }
    }
    if let Some(action) = chosen {
        tracing::info!(key, ?action, "notification action");
        on_action(key, action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing;
    use ferry_schema::DriveRecord;

    fn group(json: &str) -> SourceGroup {
        let record: DriveRecord = serde_json::from_str(json).expect("record");
        listing::from_records(vec![record]).groups.remove(0)
    }

    #[test]
    fn a_drive_with_updates_offers_install_and_show() {
        let kingston = group(include_str!("../../tests/data/drives/kingston.json"));
        let content = for_drive(&kingston).expect("notified");
        assert_eq!(content.summary, "Updates on KINGSTON");
        assert_eq!(content.body, "2 apps and a system update");
        let keys: Vec<&str> = content.actions.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["install", "show"]);
    }

    #[test]
    fn bodies_count_apps_and_the_system() {
        let mut kingston = group(include_str!("../../tests/data/drives/kingston.json"));
        assert_eq!(updates_body(&kingston), "2 apps and a system update");
        kingston.updates.remove(1);
        assert_eq!(updates_body(&kingston), "1 app and a system update");
        kingston.updates.remove(1);
        assert_eq!(updates_body(&kingston), "A system update");
        let mut apps = group(include_str!("../../tests/data/drives/kingston.json"));
        apps.updates.retain(|u| u.target == TargetKind::Flatpak);
        assert_eq!(updates_body(&apps), "2 app updates");
    }

    #[test]
    fn a_runtime_that_comes_with_an_app_is_not_counted_apart() {
        let mut apps = group(include_str!("../../tests/data/drives/kingston.json"));
        apps.updates.retain(|u| u.target == TargetKind::Flatpak);
        let mut runtime = apps.updates[0].clone();
        runtime.ref_name = "runtime/org.example.Platform/x86_64/24.08".to_owned();
        apps.updates.push(runtime.clone());
        assert_eq!(
            updates_body(&apps),
            "3 updates",
            "a runtime on its own counts"
        );
        apps.updates[0].needs.push(runtime.ref_name);
        assert_eq!(updates_body(&apps), "2 app updates");
    }

    #[test]
    fn a_drive_with_only_problems_says_why() {
        let broken = group(include_str!("../../tests/data/drives/broken-stick.json"));
        let content = for_drive(&broken).expect("notified");
        assert_eq!(
            content.summary,
            "Nothing can be installed from BROKEN STICK"
        );
        assert!(
            content
                .body
                .starts_with("The system update is signed with a key"),
            "{}",
            content.body
        );
        assert!(
            content.body.ends_with("And 1 more problem."),
            "{}",
            content.body
        );
        let keys: Vec<&str> = content.actions.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["show"]);
    }

    #[test]
    fn the_fingerprint_changes_with_the_updates_offered() {
        let kingston = group(include_str!("../../tests/data/drives/kingston.json"));
        let mut fewer = kingston.clone();
        fewer.updates.pop();
        assert_ne!(
            for_drive(&kingston).map(|c| c.fingerprint),
            for_drive(&fewer).map(|c| c.fingerprint)
        );
    }

    #[test]
    fn results_offer_restart_only_when_needed() {
        let restart = for_outcome(&Outcome::Done {
            installed: 3,
            restart_required: true,
        })
        .expect("notified");
        assert_eq!(restart.actions[0].0, "restart");
        let done = for_outcome(&Outcome::Done {
            installed: 2,
            restart_required: false,
        })
        .expect("notified");
        assert_eq!(done.body, "2 updates were installed.");
        assert!(for_outcome(&Outcome::Cancelled).is_none());
        let failed = for_outcome(&Outcome::Failed {
            message: "The drive was removed.".into(),
            installed: 0,
            restart_required: false,
        })
        .expect("notified");
        assert_eq!(failed.summary, "Updates could not be installed");
        assert_eq!(failed.body, "The drive was removed.");
    }
}
