//! The Redis client layer (`livevote::redis`) against a real `redis-server` (Debian's package,
//! `make redis-deps`): each test starts its own server on a free port in a temporary
//! directory, without persistence, and kills it (by pid) when done.

mod common;

use std::time::{Duration, Instant};

use common::redis::{RedisServer, START_TIMEOUT};
use livevote::redis::conn::{Error, Failure};
use livevote::redis::{Client, Conn, Options, Value};

fn bulk(s: &[u8]) -> Value {
    Value::Bulk(s.to_vec())
}

fn ok() -> Value {
    Value::Simple(b"OK".to_vec())
}

fn cmd(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

#[test]
fn set_get_incr_round_trip() {
    let server = RedisServer::start(&[]);
    let mut conn = Conn::connect(&server.plain_url(), &Options::default()).expect("connect");
    assert_eq!(conn.call(&[b"SET", b"k", b"v\r\n\0"]), Ok(ok()));
    assert_eq!(conn.call(&[b"GET", b"k"]), Ok(bulk(b"v\r\n\0")));
    assert_eq!(conn.call(&[b"GET", b"missing"]), Ok(Value::Null));
    assert_eq!(conn.call(&[b"INCR", b"n"]), Ok(Value::Integer(1)));
    assert_eq!(conn.call(&[b"INCRBY", b"n", b"-5"]), Ok(Value::Integer(-4)));
    // An error reply is a value, and the connection stays usable.
    let reply = conn.call(&[b"INCR", b"k"]).expect("a reply");
    assert!(
        reply.error_message().is_some_and(|m| m.starts_with("ERR")),
        "{reply:?}"
    );
    assert_eq!(
        conn.call(&[b"RPUSH", b"l", b"a", b"b"]),
        Ok(Value::Integer(2))
    );
    assert_eq!(
        conn.call(&[b"LRANGE", b"l", b"0", b"-1"]),
        Ok(Value::Array(vec![bulk(b"a"), bulk(b"b")]))
    );
    assert_eq!(
        conn.call(&[b"BLPOP", b"empty", b"0.01"]),
        Ok(Value::NullArray)
    );
    // In a pipeline, one command's error reply does not hide the others' results.
    let replies = conn
        .call_many(&[
            cmd(&[b"SET", b"s", b"1"]),
            cmd(&[b"LPUSH", b"s", b"x"]),
            cmd(&[b"INCR", b"s"]),
        ])
        .expect("replies");
    assert_eq!(replies[0], ok());
    assert!(replies[1]
        .error_message()
        .is_some_and(|m| m.starts_with("WRONGTYPE")));
    assert_eq!(replies[2], Value::Integer(2));
    assert!(conn.is_usable());
}

#[test]
fn a_pipeline_of_1000_incrs_answers_in_order() {
    let server = RedisServer::start(&[]);
    let mut conn = Conn::connect(&server.plain_url(), &Options::default()).expect("connect");
    let cmds: Vec<Vec<Vec<u8>>> = (0..1000).map(|_| cmd(&[b"INCR", b"p"])).collect();
    let replies = conn.call_many(&cmds).expect("replies");
    let want: Vec<Value> = (1..=1000).map(Value::Integer).collect();
    assert_eq!(replies, want);
    assert_eq!(conn.call(&[b"GET", b"p"]), Ok(bulk(b"1000")));
    assert_eq!(conn.call_many(&[]), Ok(vec![]));
}

#[test]
fn a_one_mebibyte_value_round_trips() {
    let server = RedisServer::start(&[]);
    let mut conn = Conn::connect(&server.plain_url(), &Options::default()).expect("connect");
    let big: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    assert_eq!(conn.call(&[b"SET", b"big", &big]), Ok(ok()));
    assert_eq!(conn.call(&[b"STRLEN", b"big"]), Ok(Value::Integer(1 << 20)));
    assert_eq!(conn.call(&[b"GET", b"big"]), Ok(Value::Bulk(big)));
    assert_eq!(conn.call(&[b"PING"]), Ok(Value::Simple(b"PONG".to_vec())));
}

#[test]
fn auth_with_a_password() {
    let server = RedisServer::start(&["--requirepass", "s3cr@t"]);
    let pong = Ok(Value::Simple(b"PONG".to_vec()));
    // The password alone (AUTH password), and with the default user (AUTH default password);
    // the '@' percent-encoded.
    for auth in [":s3cr%40t@", "default:s3cr%40t@"] {
        let mut conn = Conn::connect(&server.url((auth, "")), &Options::default())
            .unwrap_or_else(|e| panic!("{auth}: {e}"));
        assert_eq!(conn.call(&[b"PING"]), pong, "{auth}");
    }
    for auth in [":wrong@", "default:wrong@", "nobody:s3cr%40t@"] {
        let err = Conn::connect(&server.url((auth, "")), &Options::default())
            .expect_err("a bad password is refused");
        let Error::Rejected { step, ref message } = err else {
            panic!("{auth}: {err:?}");
        };
        assert_eq!(step, "AUTH");
        assert!(message.starts_with("WRONGPASS"), "{message}");
        assert!(
            err.to_string().starts_with("Redis refused AUTH: WRONGPASS"),
            "{err}"
        );
        assert!(!err.may_have_run());
    }
    // Without a password the connection opens, and commands are answered NOAUTH.
    let mut conn = Conn::connect(&server.plain_url(), &Options::default()).expect("connect");
    let reply = conn.call(&[b"PING"]).expect("a reply");
    assert!(
        reply
            .error_message()
            .is_some_and(|m| m.starts_with("NOAUTH")),
        "{reply:?}"
    );
}

#[test]
fn select_a_database() {
    let server = RedisServer::start(&[]);
    let opts = Options::default();
    let mut db3 = Conn::connect(&server.url(("", "/3")), &opts).expect("connect db 3");
    let mut db0 = Conn::connect(&server.url(("", "/0")), &opts).expect("connect db 0");
    assert_eq!(db3.call(&[b"SET", b"where", b"three"]), Ok(ok()));
    assert_eq!(db0.call(&[b"GET", b"where"]), Ok(Value::Null));
    assert_eq!(db3.call(&[b"GET", b"where"]), Ok(bulk(b"three")));
    let mut again = Conn::connect(&server.url(("", "/3")), &opts).expect("connect db 3");
    assert_eq!(again.call(&[b"GET", b"where"]), Ok(bulk(b"three")));

    let err = Conn::connect(&server.url(("", "/99")), &opts).expect_err("no db 99");
    assert!(
        matches!(&err, Error::Rejected { step: "SELECT", message } if message.contains("out of range")),
        "{err:?}"
    );
}

#[test]
fn a_killed_server_fails_the_call_and_the_client_reconnects_when_it_is_back() {
    let mut server = RedisServer::start(&[]);
    let mut client = Client::connect(server.plain_url(), Options::default()).expect("connect");
    assert_eq!(client.call(&[b"SET", b"a", b"1"]), Ok(ok()));
    server.kill();

    // The connection died while idle: that is found before the command is written, so the
    // client tries a new connection at once, and that is refused. Not sent, and it says so.
    let err = client
        .call(&[b"INCR", b"a"])
        .expect_err("the server is gone");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(!err.may_have_run());
    assert!(err.to_string().contains("command not sent"), "{err}");
    assert!(!client.is_connected());

    // Until the backoff delay has passed, calls fail at once without connecting.
    match client.call(&[b"PING"]) {
        Err(Error::Backoff { retry_in }) => {
            assert!(retry_in <= livevote::redis::conn::BACKOFF_INITIAL * 3 / 2)
        }
        // A slow machine may have spent the whole first delay already.
        Err(Error::Connect { .. }) => {}
        other => panic!("{other:?}"),
    }

    server.restart();
    let deadline = Instant::now() + START_TIMEOUT;
    let reply = loop {
        match client.call(&[b"GET", b"a"]) {
            Ok(v) => break v,
            Err(e) => {
                assert!(!e.may_have_run() || matches!(e, Error::Unknown(_)), "{e:?}");
                assert!(Instant::now() < deadline, "no reconnect: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    // A new server without persistence: the key is gone, and the client is on it.
    assert_eq!(reply, Value::Null);
    assert!(client.is_connected());
    assert_eq!(client.call(&[b"INCR", b"a"]), Ok(Value::Integer(1)));
}

/// The server closes a connection while it is idle (as Redis's `timeout` does; here
/// `CLIENT KILL`): the next call is sent on a new connection, and succeeds.
#[test]
fn a_connection_closed_while_idle_is_replaced_without_an_error() {
    let server = RedisServer::start(&[]);
    let mut client = Client::connect(server.plain_url(), Options::default()).expect("connect");
    assert_eq!(client.call(&[b"SET", b"a", b"1"]), Ok(ok()));
    let mut admin = Conn::connect(&server.plain_url(), &Options::default()).expect("connect");
    assert_eq!(
        admin.call(&[b"CLIENT", b"KILL", b"TYPE", b"normal", b"SKIPME", b"yes"]),
        Ok(Value::Integer(1))
    );
    assert_eq!(client.call(&[b"INCR", b"a"]), Ok(Value::Integer(2)));
    let replies = admin.call(&[b"CLIENT", b"KILL", b"TYPE", b"normal", b"SKIPME", b"yes"]);
    assert_eq!(replies, Ok(Value::Integer(1)));
    assert_eq!(
        client.call_many(&[cmd(&[b"INCR", b"a"]), cmd(&[b"GET", b"a"])]),
        Ok(vec![Value::Integer(3), bulk(b"3")])
    );
}

/// The server dies while it holds a command (a `BLPOP` it is blocking on): the command
/// reached it, so the error says it may have run.
#[test]
fn a_server_killed_during_a_call_leaves_its_outcome_unknown() {
    let mut server = RedisServer::start(&[]);
    let url = server.plain_url();
    let blocked = std::thread::spawn(move || {
        let mut client = Client::connect(url, Options::default()).expect("connect");
        let err = client
            .call(&[b"BLPOP", b"never", b"4"])
            .expect_err("the server dies first");
        (err, client.is_connected())
    });
    // Wait until the server really holds the command (a condition, not a sleep).
    let mut watcher = Conn::connect(&server.plain_url(), &Options::default()).expect("connect");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let info = watcher.call(&[b"INFO", b"clients"]).expect("INFO");
        let text = String::from_utf8_lossy(info.as_bytes().expect("bulk")).into_owned();
        if text.contains("blocked_clients:1") {
            break;
        }
        assert!(Instant::now() < deadline, "the BLPOP never blocked: {text}");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let (err, connected) = blocked.join().expect("client thread");
    assert!(
        matches!(err, Error::Unknown(Failure::Closed | Failure::Io { .. })),
        "{err:?}"
    );
    assert!(err.may_have_run());
    assert!(err.to_string().contains("may have been sent"), "{err}");
    assert!(!connected, "a broken connection is dropped");
}

#[test]
fn a_read_deadline_fails_a_blocked_call_in_bounded_time() {
    let server = RedisServer::start(&[]);
    let opts = Options {
        timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let mut conn = Conn::connect(&server.plain_url(), &opts).expect("connect");
    let started = Instant::now();
    // The server holds the reply for 2 s; our deadline is 200 ms.
    let err = conn
        .call(&[b"BLPOP", b"nothing", b"2"])
        .expect_err("the deadline passes first");
    let took = started.elapsed();
    assert!(err.is_timeout() && err.may_have_run(), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    // The late reply would be taken for the next command's: the connection is done.
    assert!(!conn.is_usable());

    // A caller's own deadline can be longer than the default (a blocking read that waits).
    let mut conn = Conn::connect(&server.plain_url(), &opts).expect("connect");
    let reply = conn.call_by(
        &[b"BLPOP", b"nothing", b"0.3"],
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(reply, Ok(Value::NullArray));
}
