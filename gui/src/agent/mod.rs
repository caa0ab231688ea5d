//! The background agent (`ferry --background`): watches the drive records with inotify and
//! tells the person what a drive offers through desktop notifications.

pub mod notify;
pub mod watch;

pub use notify::{NotificationAction, NotificationContent, Notifier};
pub use watch::DriveWatcher;
