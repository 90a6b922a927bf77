//! The application: the vote table, the routes, pages and static files, and the live
//! WebSocket endpoints. Knows HTTP requests and responses, never sockets' bytes.

pub mod chat;
pub mod hub;
pub mod json;
pub mod live;
pub mod pages;
pub mod routes;
pub mod static_files;
pub mod votes;

use std::io;
use std::sync::{Arc, Weak};

use crate::config::Config;
use crate::ws::conn::Budget;
use static_files::StaticFiles;
use votes::Votes;

/// Everything the handlers share.
pub struct App {
    pub config: Config,
    pub votes: Arc<Votes>,
    pub files: StaticFiles,
    pub template: pages::Template,
    pub hub: Arc<hub::Hub>,
    /// Bytes all WebSocket connections may hold for messages being received.
    pub ws_budget: Arc<Budget>,
    /// The `Arc` this app lives in, so a handler can hand the app to an upgraded connection.
    me: Weak<App>,
}

impl App {
    pub fn new(config: Config) -> io::Result<Arc<App>> {
        let files = StaticFiles::new(&config.www).map_err(|e| {
            io::Error::new(e.kind(), format!("--www {}: {e}", config.www.display()))
        })?;
        let template = pages::Template::load(files.root())?;
        let votes = Arc::new(Votes::new(&config.candidates));
        let hub = hub::Hub::start(Arc::clone(&votes), &config.limits)?;
        let ws_budget = Arc::new(Budget::new(config.limits.ws_max_buffered));
        Ok(Arc::new_cyclic(|me| App {
            config,
            votes,
            files,
            template,
            hub,
            ws_budget,
            me: me.clone(),
        }))
    }

    /// This app as an `Arc`; it always lives in one (only `new` builds it).
    pub fn shared(&self) -> Arc<App> {
        self.me
            .upgrade()
            .expect("App is only built inside an Arc by App::new")
    }
}
