//! The application: the vote table, the routes, pages and static files, and the live
//! WebSocket endpoints. Knows HTTP requests and responses, never sockets' bytes.

pub mod admin;
pub mod chat;
pub mod cursor;
pub mod export;
pub mod fanout;
pub mod hub;
pub mod journal;
pub mod json;
pub mod live;
pub mod longpoll;
pub mod metrics;
pub mod pages;
pub mod polls;
pub mod presence;
pub mod rate;
pub mod redis_store;
pub mod routes;
pub mod sse;
pub mod static_files;
pub mod store;
pub mod votes;

use std::io;
use std::sync::{Arc, Weak};

use crate::admission::Admission;
use crate::config::Config;
use crate::ws::conn::Budget;
use static_files::StaticFiles;
use store::{Recovery, Store};
use votes::Votes;

/// Most votes a live stream (WebSocket broadcast, SSE) sends one by one after a wake-up; more
/// at once go out as one snapshot.
pub const MAX_LIVE_DELTA: usize = 64;
/// Most votes a resume (and a long-poll answer) lists before it sends the whole tally instead.
pub const MAX_RESUME_DELTA: usize = 1024;
/// How often published presence is brought up to date.
const PRESENCE_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Everything the handlers share.
pub struct App {
    pub config: Config,
    /// Every poll; the default one's table and hub are also `votes` and `hub`.
    pub polls: Arc<polls::Polls>,
    /// The admin API's token and the secret cookies are signed with.
    pub admin: admin::Keys,
    /// `--vote-rate`, when given.
    pub rate: Option<rate::RateLimit>,
    pub votes: Arc<Votes>,
    pub files: StaticFiles,
    pub template: pages::Template,
    /// The presenter view's template.
    pub presenter: pages::Template,
    pub hub: Arc<hub::Hub>,
    /// Bytes all WebSocket connections may hold for messages being received.
    pub ws_budget: Arc<Budget>,
    /// Open connections (the server's accept loop admits through it).
    pub admission: Arc<Admission>,
    pub metrics: Arc<metrics::Metrics>,
    /// Every open WebSocket, for a shutdown to close with 1001.
    pub sockets: Arc<live::Sockets>,
    /// Where the votes are kept, as `/healthz` says: `journal`, `memory` or `redis` (`store`
    /// for one an embedder brought, [`App::with_store`]).
    pub store_kind: &'static str,
    /// Requests being handled or answered (from the handler's start to the end of the
    /// response's write): a shutdown waits for them.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The `Arc` this app lives in, so a handler can hand the app to an upgraded connection.
    me: Weak<App>,
}

impl App {
    /// The app the configuration describes, its votes in the store it names.
    pub fn new(config: Config) -> io::Result<Arc<App>> {
        App::build(config, store::open)
    }

    /// An app whose votes go to `store` (rebuilt from `recovery`) instead of the store the
    /// configuration names: for embedders and tests that bring a store of their own.
    pub fn with_store(
        config: Config,
        store: Box<dyn Store>,
        recovery: Recovery,
    ) -> io::Result<Arc<App>> {
        App::build(config, move |_: &Config| Ok(Some((store, recovery))))
    }

    /// `open_store` runs once the pages are found, so a bad `--www` touches no store.
    fn build(
        config: Config,
        open_store: impl FnOnce(&Config) -> io::Result<Option<(Box<dyn Store>, Recovery)>>,
    ) -> io::Result<Arc<App>> {
        let www = config.www.as_deref();
        let files = StaticFiles::new(www).map_err(|e| {
            let dir = www.unwrap_or(std::path::Path::new("")).display();
            io::Error::new(e.kind(), format!("--www {dir}: {e}"))
        })?;
        let template = pages::Template::load(&files)?;
        // A `--www DIR` from before the presenter view has no template for it: the built-in one.
        let presenter = pages::Template::load_named(&files, pages::PRESENT_FILE).or_else(|_| {
            pages::Template::load_named(&StaticFiles::new(None)?, pages::PRESENT_FILE)
        })?;
        let metrics = Arc::new(metrics::Metrics::default());
        let fanout = hub::Fanout::new(config.limits.fanout_writers);
        let settings = votes::Settings {
            vote_id_window: config.limits.vote_id_window,
            vote_id_memory: config.limits.vote_id_memory,
            vote_timeout: config.limits.vote_timeout,
            rules: Default::default(),
        };
        let opened = open_store(&config)?;
        let store_kind = match (&config.redis, &opened, &config.data) {
            (Some(_), None, _) => "redis",
            (_, None, _) => "memory",
            (_, Some(_), Some(_)) => "journal",
            (_, Some(_), None) => "store",
        };
        let redis = config.redis.as_ref().map(|url| redis_store::Settings {
            url: url.clone(),
            prefix: config.redis_prefix.clone(),
            vote_id_window: config.limits.vote_id_window,
            vote_id_memory: config.limits.vote_id_memory,
            vote_timeout: config.limits.vote_timeout,
        });
        let votes = match (&redis, opened) {
            (Some(redis), None) => {
                // The tally in Redis: this instance's copy follows it.
                let (votes, report) = redis_store::start(
                    redis,
                    &redis_store::PollSpec {
                        id: redis_store::keys::DEFAULT_POLL,
                        candidates: &config.candidates,
                        rules: Default::default(),
                        create: true,
                    },
                    &settings,
                    "commit".into(),
                    Arc::clone(&metrics),
                )?;
                for line in report {
                    crate::log::report(&line);
                }
                votes
            }
            (_, None) => Arc::new(Votes::with_settings(&config.candidates, &settings)),
            (_, Some((store, recovery))) => {
                let (votes, report) =
                    Votes::durable(&config.candidates, store, recovery, &settings);
                for line in report {
                    crate::log::report(&line);
                }
                let votes = Arc::new(votes);
                let (v, m) = (Arc::clone(&votes), Arc::clone(&metrics));
                std::thread::Builder::new()
                    .name("commit".into())
                    .spawn(move || v.commit_loop(&|d| m.fsync(d)))?;
                votes
            }
        };
        let default_meta = polls::meta::Meta {
            id: polls::meta::DEFAULT_ID.to_string(),
            question: config.question.clone(),
            options: config.candidates.clone(),
            mode: votes::Mode::Unlimited,
            results: polls::meta::Results::Always,
            created_ms: 0,
        };
        let default = polls::Poll::new(
            default_meta,
            Arc::clone(&votes),
            Arc::clone(&metrics),
            fanout,
            true,
        )?;
        let hub = Arc::clone(default.hub()?);
        let polls_dir = config.data.as_ref().map(|d| store::suffixed(d, ".polls"));
        let polls = Arc::new(polls::Polls::open(
            default,
            polls::Making {
                settings: settings.clone(),
                max_polls: config.limits_max_polls(),
                max_voters: config.max_voters,
                dir: polls_dir,
                redis,
                metrics: Arc::clone(&metrics),
                fanout,
            },
        )?);
        polls::Polls::follow_registry(&polls)?;
        let admin = admin::Keys::open(&config)?;
        let p = Arc::downgrade(&polls);
        let local_presence = config.redis.is_none();
        std::thread::Builder::new()
            .name("presence".into())
            .spawn(move || {
                // With Redis, presence is the total over every instance (redis_store).
                while let Some(polls) = p.upgrade().filter(|_| local_presence) {
                    for poll in polls.all() {
                        poll.votes.publish_presence();
                    }
                    drop(polls);
                    std::thread::sleep(PRESENCE_TICK);
                }
            })?;
        let ws_budget = Arc::new(Budget::new(config.limits.ws_max_buffered));
        let rate = config.vote_rate.map(|r| rate::RateLimit::new(f64::from(r)));
        Ok(Arc::new_cyclic(|me| App {
            rate,
            config,
            polls,
            admin,
            votes,
            files,
            template,
            presenter,
            hub,
            ws_budget,
            admission: Arc::new(Admission::default()),
            metrics,
            sockets: Arc::default(),
            store_kind,
            in_flight: Arc::default(),
            me: me.clone(),
        }))
    }

    /// Shutting down: `/readyz` answers `503`, and responses close their connections.
    pub fn draining(&self) -> bool {
        self.metrics
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests being handled or answered now (a long-poll waiting counts; an idle keep-alive
    /// connection, a WebSocket or an event stream does not).
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// This app as an `Arc`; it always lives in one (only `new` builds it).
    pub fn shared(&self) -> Arc<App> {
        self.me
            .upgrade()
            .expect("App is only built inside an Arc by App::new")
    }
}
