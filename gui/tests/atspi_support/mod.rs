//! A screen reader's view of the app: its accessibility tree, read over AT-SPI on the
//! accessibility bus that `org.a11y.Bus` on the session bus hands out (at-spi2-core starts it,
//! and GTK registers the app there unless `GTK_A11Y=none`).

use std::fmt;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use zbus::export::futures_core::Stream;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath, OwnedVariant};

const REGISTRY: &str = "org.a11y.atspi.Registry";
const ROOT: &str = "/org/a11y/atspi/accessible/root";
const ACCESSIBLE: &str = "org.a11y.atspi.Accessible";
const ACTION: &str = "org.a11y.atspi.Action";
const VALUE: &str = "org.a11y.atspi.Value";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A window has a few hundred accessibles; more means a cycle or a runaway tree.
const MAX_NODES: usize = 5_000;
const MAX_DEPTH: usize = 64;

/// Bits of `GetState`, numbered as at-spi2-core's `AtspiStateType`.
pub const STATE_FOCUSABLE: u32 = 11;
pub const STATE_FOCUSED: u32 = 12;
pub const STATE_SENSITIVE: u32 = 24;

/// Roles whose accessibles a person acts on, by `GetRoleName`.
pub const INTERACTIVE_ROLES: [&str; 9] = [
    "button",
    "push button",
    "toggle button",
    "check box",
    "radio button",
    "switch",
    "link",
    "combo box",
    "menu item",
];

/// One accessible object, as a screen reader reads it.
#[derive(Clone, Debug)]
pub struct Node {
    pub bus_name: String,
    pub path: OwnedObjectPath,
    pub role: String,
    pub name: String,
    pub states: Vec<u32>,
    /// The name of the top-level window it is in.
    pub window: String,
    pub depth: usize,
}

impl Node {
    pub fn has_state(&self, bit: u32) -> bool {
        let word = (bit / 32) as usize;
        self.states
            .get(word)
            .is_some_and(|bits| bits & (1 << (bit % 32)) != 0)
    }

    pub fn is_interactive(&self) -> bool {
        INTERACTIVE_ROLES.contains(&self.role.as_str())
    }

    /// Whether the name says something. GTK falls back to the widget's type name
    /// ("GtkButton") when nothing names it, which a screen reader reads out as it is.
    pub fn is_named(&self) -> bool {
        let name = self.name.trim();
        !name.is_empty() && !is_type_name(name)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} {:?}{}{}",
            self.role,
            self.name,
            if self.has_state(STATE_FOCUSABLE) {
                " focusable"
            } else {
                ""
            },
            if self.has_state(STATE_SENSITIVE) {
                ""
            } else {
                " insensitive"
            }
        )
    }
}

/// `GtkFoo`, `AdwFoo`: a GObject type name, not words.
fn is_type_name(name: &str) -> bool {
    ["Gtk", "Adw"].iter().any(|prefix| {
        name.strip_prefix(prefix).is_some_and(|rest| {
            rest.starts_with(|first: char| first.is_ascii_uppercase())
                && rest.chars().all(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// What one walk saw: every accessible of the app, depth first.
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn in_window<'a>(&'a self, window: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |node| node.window == window)
    }

    /// The tree as indented text, for failure messages.
    pub fn dump(&self, window: &str) -> String {
        self.in_window(window)
            .map(|node| format!("{:indent$}{node}\n", "", indent = node.depth * 2))
            .collect()
    }

    /// The accessibles below `parent` (by its index in `nodes`).
    pub fn descendants(&self, parent: usize) -> impl Iterator<Item = &Node> {
        let depth = self.nodes.get(parent).map_or(0, |node| node.depth);
        self.nodes
            .iter()
            .skip(parent + 1)
            .take_while(move |node| node.depth > depth)
    }
}

/// A connection to the accessibility bus.
pub struct A11yBus {
    connection: Connection,
}

impl A11yBus {
    /// Asks the session bus for the accessibility bus (starting it if need be) and connects.
    pub fn connect() -> Result<Self> {
        zbus::block_on(async {
            let session = zbus::connection::Builder::session()
                .method_timeout(CALL_TIMEOUT)
                .build()
                .await
                .context("connecting to the session bus")?;
            let reply = session
                .call_method(
                    Some("org.a11y.Bus"),
                    "/org/a11y/bus",
                    Some("org.a11y.Bus"),
                    "GetAddress",
                    &(),
                )
                .await
                .context("asking org.a11y.Bus for the accessibility bus (at-spi2-core)")?;
            let address: String = reply.body().deserialize()?;
            let connection = zbus::connection::Builder::address(address.as_str())
                .method_timeout(CALL_TIMEOUT)
                .build()
                .await
                .with_context(|| format!("connecting to the accessibility bus at {address}"))?;
            Ok(Self { connection })
        })
    }

    /// The accessible application of process `pid`, once it has registered.
    pub fn application(&self, pid: u32, timeout: Duration) -> Result<(String, OwnedObjectPath)> {
        let deadline = Instant::now() + timeout;
        loop {
            let apps = self.children(REGISTRY, ROOT)?;
            for (bus_name, path) in apps {
                if self.pid_of(&bus_name).ok() == Some(pid) {
                    return Ok((bus_name, path));
                }
            }
            if Instant::now() >= deadline {
                bail!("process {pid} did not register with the AT-SPI registry in {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Walks the application's tree; the windows are its children. A walk that meets an
    /// accessible the application dropped meanwhile (a row changing state under it) starts
    /// again, a few times at most.
    pub fn walk(&self, application: &(String, OwnedObjectPath)) -> Result<Tree> {
        const ATTEMPTS: usize = 5;
        let mut attempt = 1;
        loop {
            match self.walk_once(application) {
                Err(error) if attempt < ATTEMPTS && gone_meanwhile(&error) => attempt += 1,
                walked => return walked,
            }
        }
    }

    fn walk_once(&self, application: &(String, OwnedObjectPath)) -> Result<Tree> {
        let (bus_name, root) = application;
        let mut nodes = Vec::new();
        // Depth first, children in order: (path, depth, window).
        let mut pending = vec![(root.clone(), 0usize, String::new())];
        while let Some((path, depth, window)) = pending.pop() {
            if nodes.len() >= MAX_NODES {
                bail!("more than {MAX_NODES} accessibles: a cycle?");
            }
            let name = self.name(bus_name, &path)?;
            let window = if depth == 1 { name.clone() } else { window };
            let node = Node {
                bus_name: bus_name.clone(),
                role: self.call(bus_name, &path, ACCESSIBLE, "GetRoleName")?,
                states: self.call(bus_name, &path, ACCESSIBLE, "GetState")?,
                name,
                window: window.clone(),
                depth,
                path: path.clone(),
            };
            nodes.push(node);
            if depth < MAX_DEPTH {
                let children = self.children(bus_name, &path)?;
                for (_, child) in children.into_iter().rev() {
                    pending.push((child, depth + 1, window.clone()));
                }
            }
        }
        Ok(Tree { nodes })
    }

    /// Performs the action called `action` ("click", in any case) through the Action
    /// interface, as a screen reader does when its user activates the object.
    pub fn do_action(&self, node: &Node, action: &str) -> Result<()> {
        let actions: Vec<(String, String, String)> =
            self.call(&node.bus_name, &node.path, ACTION, "GetActions")?;
        let index = actions
            .iter()
            .position(|(name, _, _)| name.eq_ignore_ascii_case(action))
            .with_context(|| format!("{node} offers the actions {actions:?}, not {action:?}"))?;
        let index = i32::try_from(index)?;
        let done: bool = zbus::block_on(async {
            let reply = self
                .connection
                .call_method(
                    Some(node.bus_name.as_str()),
                    node.path.as_str(),
                    Some(ACTION),
                    "DoAction",
                    &(index,),
                )
                .await?;
            reply.body().deserialize::<bool>()
        })?;
        if !done {
            bail!("{node} refused its {action:?} action");
        }
        Ok(())
    }

    /// The state bits of `node` now.
    pub fn states(&self, node: &Node) -> Result<Vec<u32>> {
        self.call(&node.bus_name, &node.path, ACCESSIBLE, "GetState")
    }

    /// Presses and releases the key `keysym` (X11 keysym, e.g. 0xff09 for Tab) through the
    /// registry's device event controller, which synthesizes it on the X server.
    pub fn press_key(&self, keysym: u32) -> Result<()> {
        // AtspiKeySynthType: ATSPI_KEY_SYM presses and releases the keysym.
        const KEY_SYM: u32 = 3;
        let keysym = i32::try_from(keysym)?;
        self.call_on::<(), _>(
            REGISTRY,
            "/org/a11y/atspi/registry/deviceeventcontroller",
            "org.a11y.atspi.DeviceEventController",
            "GenerateKeyboardEvent",
            &(keysym, "", KEY_SYM),
        )
    }

    /// Starts recording the `PropertyChange` events with `detail` ("accessible-value",
    /// "accessible-name") that applications send, as a screen reader listens to them.
    pub fn listen(&self, detail: &'static str) -> Result<Events> {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface("org.a11y.atspi.Event.Object")
            .member("PropertyChange")
            .arg(0, detail)
            .build()?;
        let stream = zbus::block_on(MessageStream::for_match_rule(
            rule,
            &self.connection,
            NonZeroUsize::new(4096),
        ))?;
        Ok(Events { stream })
    }

    fn children(&self, bus_name: &str, path: &str) -> Result<Vec<(String, OwnedObjectPath)>> {
        self.call(bus_name, path, ACCESSIBLE, "GetChildren")
    }

    /// What a progress bar or slider reports through the Value interface.
    pub fn current_value(&self, node: &Node) -> Result<f64> {
        let value = self.property(&node.bus_name, &node.path, VALUE, "CurrentValue")?;
        Ok(f64::try_from(value)?)
    }

    /// The name `node` has now.
    pub fn name_of(&self, node: &Node) -> Result<String> {
        self.name(&node.bus_name, &node.path)
    }

    fn name(&self, bus_name: &str, path: &str) -> Result<String> {
        let name = self.property(bus_name, path, ACCESSIBLE, "Name")?;
        Ok(String::try_from(name)?)
    }

    fn property(
        &self,
        bus_name: &str,
        path: &str,
        interface: &str,
        property: &str,
    ) -> Result<OwnedVariant> {
        self.call_on(
            bus_name,
            path,
            "org.freedesktop.DBus.Properties",
            "Get",
            &(interface, property),
        )
        .with_context(|| format!("{interface}.{property} of {path}"))
    }

    fn pid_of(&self, bus_name: &str) -> Result<u32> {
        self.call_on(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetConnectionUnixProcessID",
            &(bus_name,),
        )
    }

    /// A method without arguments; its one result.
    fn call<T>(&self, bus_name: &str, path: &str, interface: &str, method: &str) -> Result<T>
    where
        T: for<'de> zbus::wire::DynamicDeserialize<'de>,
    {
        self.call_on(bus_name, path, interface, method, &())
            .with_context(|| format!("{interface}.{method} on {path}"))
    }

    fn call_on<T, B>(
        &self,
        bus_name: &str,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<T>
    where
        T: for<'de> zbus::wire::DynamicDeserialize<'de>,
        B: zbus::export::serde::Serialize + zbus::wire::DynamicType,
    {
        zbus::block_on(async {
            let reply = self
                .connection
                .call_method(Some(bus_name), path, Some(interface), method, body)
                .await?;
            Ok(reply.body().deserialize::<T>()?)
        })
    }
}

/// Events received since [`A11yBus::listen`].
pub struct Events {
    stream: MessageStream,
}

impl Events {
    /// The object paths of the events received so far, in order. An event an application
    /// sent before it answered a method call has arrived by the time the answer has.
    pub fn take(&mut self) -> Vec<String> {
        let mut paths = Vec::new();
        let mut context = Context::from_waker(Waker::noop());
        while let Poll::Ready(Some(message)) = Pin::new(&mut self.stream).poll_next(&mut context) {
            if let Some(path) = message
                .ok()
                .and_then(|message| message.header().path().map(|path| path.to_string()))
            {
                paths.push(path);
            }
        }
        paths
    }
}

/// Whether `error` says an accessible no longer exists: GTK answers so for an object it
/// dropped between a `GetChildren` that listed it and a call on it.
fn gone_meanwhile(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("Object does not exist")
        || text.contains("org.freedesktop.DBus.Error.UnknownObject")
}
