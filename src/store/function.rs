//! The gateway's Lua, as one Redis Functions library (`FUNCTION LOAD`),
//! each script a function called with `FCALL`.
//!
//! A library is loaded once; an `EVALSHA` script ran its whole text on
//! every call, so every call built the shared helpers anew, which cost an
//! access step about a twentieth of its Redis work. The helpers now live at
//! the library's top, built once, and each function starts with `begin`
//! (`scripts/function.lua`), which hands the helpers its KEYS and ARGV and
//! clears the state they keep per call.
//!
//! The library and its functions are named after a digest of the library's
//! text, `twofa_<digest>` and `<script>_<digest>`, so two builds of the
//! gateway that share a Redis during a rolling upgrade each call their own
//! Lua, as they did with scripts called by SHA. A Redis that restarted
//! without its data, or a cluster node that joined, has no library: the call
//! that finds its function missing loads the library and calls again.

use std::sync::{Arc, OnceLock};

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisResult, ToRedisArgs};

/// A library's final text, and the digest its names carry.
struct Library {
    code: String,
    digest: String,
}

/// The library under construction: its shared helpers, then a function per
/// script. Its functions are handed out as they are added, and named once
/// [`finish`](Builder::finish) knows the whole text.
pub(super) struct Builder {
    code: String,
    library: Arc<OnceLock<Library>>,
}

/// Stands for the digest in the text until it is known.
const DIGEST: &str = "@DIGEST@";

impl Builder {
    /// A library whose helpers are `prelude`, with `PUBLISH` naming the
    /// publish command its functions call.
    pub(super) fn new(publish: &str, prelude: &[&str]) -> Builder {
        let mut code =
            format!("#!lua name=twofa_{DIGEST}\nlocal KEYS, ARGV\nlocal PUBLISH = '{publish}'\n");
        for part in prelude {
            code.push_str(part);
            code.push('\n');
        }
        Builder {
            code,
            library: Arc::new(OnceLock::new()),
        }
    }

    /// Adds the script `body` as the function `script`, with Redis's
    /// function `flags`: `no-writes` for one that only reads, which Redis
    /// then runs even when it is full, as it did an `EVALSHA` script until
    /// its first write (a function without flags is refused whole).
    pub(super) fn function(
        &mut self,
        script: &'static str,
        flags: &[&str],
        body: &str,
    ) -> Function {
        let flags = flags
            .iter()
            .map(|flag| format!("'{flag}'"))
            .collect::<Vec<_>>()
            .join(", ");
        self.code.push_str(&format!(
            "redis.register_function{{function_name = '{script}_{DIGEST}', flags = {{ {flags} }}, callback = function(keys, args)\nbegin(keys, args)\n{body}\nend}}\n"
        ));
        Function {
            script,
            library: self.library.clone(),
            name: OnceLock::new(),
        }
    }

    /// Names the library and its functions after the SHA-1 of its text, as
    /// redis-rs computes it for a script.
    pub(super) fn finish(self) {
        let digest = redis::Script::new(&self.code).get_hash()[..12].to_owned();
        let code = self.code.replace(DIGEST, &digest);
        // A builder finishes once, so the library is always unset here.
        let _ = self.library.set(Library { code, digest });
    }
}

/// One function of the library.
pub struct Function {
    script: &'static str,
    library: Arc<OnceLock<Library>>,
    /// `<script>_<digest>`, built on the first call rather than on every one.
    name: OnceLock<String>,
}

impl Function {
    /// A call of this function, starting with its first key.
    pub fn key<T: ToRedisArgs>(&self, key: T) -> Call<'_> {
        let mut call = Call {
            function: self,
            keys: Vec::new(),
            args: Vec::new(),
        };
        call.key(key);
        call
    }

    fn library(&self) -> &Library {
        self.library
            .get()
            .unwrap_or_else(|| unreachable!("Scripts::new finishes its library"))
    }

    /// `<script>_<digest>`.
    fn name(&self) -> &str {
        self.name
            .get_or_init(|| format!("{}_{}", self.script, self.library().digest))
    }

    /// The name of the library it belongs to: `twofa_<digest>`.
    pub fn library_name(&self) -> String {
        format!("twofa_{}", self.library().digest)
    }

    /// Loads its library, replacing one of the same name (the same text).
    /// On a cluster the redis crate sends it to every primary.
    pub(super) async fn load<C: ConnectionLike>(&self, conn: &mut C) -> RedisResult<()> {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&self.library().code)
            .exec_async(conn)
            .await
    }
}

/// A call being built: keys, then arguments.
pub struct Call<'a> {
    function: &'a Function,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call<'_> {
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// `FCALL`, loading the library first if Redis has lost it. On a
    /// cluster the load goes to every primary, and fails if one is down
    /// even when the one this call needs took it, so the call is tried
    /// again whatever the load's outcome, which only shows if it still
    /// finds no function.
    pub async fn invoke_async<T: FromRedisValue, C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> RedisResult<T> {
        let mut fcall = redis::cmd("FCALL");
        fcall
            .arg(self.function.name())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        match fcall.query_async(conn).await {
            Err(error) if is_missing(&error) => {
                let loaded = self.function.load(conn).await;
                match fcall.query_async(conn).await {
                    Err(again) if is_missing(&again) => Err(loaded.err().unwrap_or(again)),
                    result => result,
                }
            }
            result => result,
        }
    }
}

/// Whether Redis answered that it has no such function.
fn is_missing(error: &redis::RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.contains("Function not found"))
}
