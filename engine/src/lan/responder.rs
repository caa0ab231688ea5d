//! Which mDNS responder publishes and browses: avahi-daemon when it runs (one responder owns
//! port 5353, as on every GNOME desktop), else the built-in one (`mdns-sd`).

use std::fmt;

/// The mDNS responder Ferry goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Responder {
    /// avahi-daemon, over its D-Bus API on the system bus.
    Avahi,
    /// Ferry's own responder, in this process.
    Builtin,
}

impl Responder {
    /// avahi-daemon when its name `org.freedesktop.Avahi` has an owner on the system bus,
    /// else the built-in responder.
    pub fn choose() -> Self {
        if super::avahi::running() {
            Responder::Avahi
        } else {
            Responder::Builtin
        }
    }
}

impl fmt::Display for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Responder::Avahi => "avahi-daemon",
            Responder::Builtin => "the built-in responder",
        })
    }
}
