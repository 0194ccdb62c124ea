//! A RabbitMQ cluster of its own for fault tests (R19): `n` broker nodes on this machine, each
//! with its own node name, AMQP and distribution ports, data and log directories and Erlang
//! cookie under a temporary directory, joined into one cluster with `pause_minority`.
//!
//! It never touches the system broker: every node has a name of its own
//! (`obt<random>-<i>@localhost`), every `rabbitmqctl` call names its node with `-n` and runs
//! with `HOME` = the cluster's directory, whose cookie the system broker does not share, so a
//! mistake cannot reach it. Dropping the value kills the nodes (`kill -9` of the PIDs they
//! recorded) and removes the directory.
//!
//! Needs Debian's `rabbitmq-server` package (`/usr/lib/rabbitmq/bin`); [`RabbitCluster::available`]
//! says whether it is there.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

const BIN: &str = "/usr/lib/rabbitmq/bin";

/// One node of a [`RabbitCluster`].
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub amqp_port: u16,
    pub dist_port: u16,
    pub dir: PathBuf,
}

impl Node {
    pub fn amqp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.amqp_port))
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f?heartbeat=10`.
    pub fn amqp_url(&self) -> String {
        format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f?heartbeat=10",
            self.amqp_port
        )
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// The OS pid of the node's Erlang VM, as the node recorded it.
    pub fn os_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// A cluster of broker nodes owned by one test.
pub struct RabbitCluster {
    dir: PathBuf,
    pub nodes: Vec<Node>,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RabbitCluster {
    /// Whether the RabbitMQ server scripts are installed.
    pub fn available() -> bool {
        Path::new(BIN).join("rabbitmq-server").exists()
    }

    /// Starts `n` nodes and joins nodes 2..n to node 1. Waits until every node reports the
    /// whole cluster running.
    pub async fn start(n: usize) -> Result<RabbitCluster> {
        let sfx = crate::unique_suffix();
        let dir = std::env::temp_dir().join(format!("orderbus-cluster-{sfx}"));
        std::fs::create_dir_all(&dir)?;
        let cookie = dir.join(".erlang.cookie");
        std::fs::write(&cookie, format!("ORDERBUSTEST{}", sfx.to_uppercase()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))?;
        }
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        let mut nodes = Vec::with_capacity(n);
        for i in 1..=n {
            let node_dir = dir.join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir)?;
            nodes.push(Node {
                name: format!("obt{sfx}-{i}@localhost"),
                amqp_port: free_port()?,
                dist_port: free_port()?,
                dir: node_dir,
            });
        }
        let cluster = RabbitCluster { dir, nodes };
        for i in 0..n {
            cluster.write_config(i)?;
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.await_node(i, Duration::from_secs(120)).await?;
        }
        let first = cluster.nodes[0].name.clone();
        for i in 1..n {
            cluster.ctl(i, &["stop_app"]).await?;
            cluster.ctl(i, &["join_cluster", &first]).await?;
            cluster.ctl(i, &["start_app"]).await?;
        }
        cluster.await_running(n, Duration::from_secs(120)).await?;
        Ok(cluster)
    }

    fn write_config(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        std::fs::write(
            node.dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{}\n\
                 cluster_partition_handling = pause_minority\n\
                 loopback_users = none\n\
                 disk_free_limit.absolute = 50MB\n\
                 log.file.level = warning\n\
                 log.console = false\n",
                node.amqp_port
            ),
        )?;
        Ok(())
    }

    fn env(&self, cmd: &mut Command, i: usize) {
        let node = &self.nodes[i];
        cmd.env("HOME", &self.dir)
            .env("RABBITMQ_NODENAME", &node.name)
            .env("RABBITMQ_NODE_PORT", node.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", node.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", node.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", node.dir.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", node.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_PID_FILE", node.pid_file())
            .env("RABBITMQ_USE_LONGNAME", "false")
            // The system broker's environment file must not be read; loopback only.
            .env("RABBITMQ_CONF_ENV_FILE", node.dir.join("rabbitmq-env.conf"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_FLAGS", "-kernel inet_dist_use_interface {127,0,0,1}")
            // One scheduler thread per node: three nodes share this machine's cores.
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "+S 1:1 +sbwt none");
    }

    /// Starts node `i` (again) on its own data directory: a restarted node rejoins the cluster.
    pub fn spawn(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let _ = std::fs::remove_file(node.pid_file());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("server.out"))?;
        let mut cmd = Command::new(Path::new(BIN).join("rabbitmq-server"));
        self.env(&mut cmd, i);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", node.name))?;
        Ok(())
    }

    /// Runs `rabbitmqctl -n <node i> args...` (the CLI's own Erlang node uses the cluster's
    /// cookie). Returns stdout; an error with stderr if it fails.
    pub async fn ctl(&self, i: usize, args: &[&str]) -> Result<String> {
        self.tool(i, "rabbitmqctl", args).await
    }

    /// Runs one of the RabbitMQ CLI tools against node `i`.
    pub async fn tool(&self, i: usize, tool: &str, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(Path::new(BIN).join(tool));
        self.env(&mut cmd, i);
        cmd.arg("-n").arg(&self.nodes[i].name).args(args);
        let what = format!("{tool} -n {} {}", self.nodes[i].name, args.join(" "));
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| anyhow!("{what}: {e}"))?
            .with_context(|| what.clone())?;
        if !out.status.success() {
            bail!(
                "{what}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until node `i` has booted (its pid file exists and `await_startup` succeeds).
    pub async fn await_node(&self, i: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.nodes[i].os_pid().is_some()
                && self
                    .ctl(i, &["await_startup", "--timeout", "10"])
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not start within {limit:?}; see {}",
                    self.nodes[i].name,
                    self.nodes[i].dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until some node reports `n` running nodes.
    pub async fn await_running(&self, n: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            for i in 0..self.nodes.len() {
                if let Ok(out) = self
                    .ctl(i, &["eval", "length(rabbit_nodes:all_running())."])
                    .await
                {
                    if out.trim().parse::<usize>().ok() == Some(n) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("the cluster did not reach {n} running nodes within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `kill -9` of node `i`'s Erlang VM; waits until the process is gone.
    pub async fn kill(&self, i: usize) -> Result<()> {
        let pid = self.nodes[i]
            .os_pid()
            .ok_or_else(|| anyhow!("node {} has no pid", self.nodes[i].name))?;
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                bail!("node {} (pid {pid}) survived kill -9", self.nodes[i].name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops node `i` cleanly (`rabbitmqctl stop`).
    pub async fn stop(&self, i: usize) -> Result<()> {
        let pid = self.nodes[i].os_pid();
        self.ctl(i, &["stop"]).await?;
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Restarts a killed or stopped node and waits until it is running in the cluster again.
    pub async fn restart(&self, i: usize) -> Result<()> {
        self.spawn(i)?;
        self.await_node(i, Duration::from_secs(120)).await
    }

    /// The index of the node that leads quorum queue `queue`, asked of node `via`.
    pub async fn leader_of(&self, via: usize, queue: &str) -> Result<usize> {
        let out = self
            .ctl(
                via,
                &[
                    "list_queues",
                    "name",
                    "leader",
                    "--no-table-headers",
                    "--quiet",
                ],
            )
            .await?;
        let leader = out
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?, f.next()?))
            })
            .find(|(name, _)| *name == queue)
            .map(|(_, leader)| leader.to_owned())
            .ok_or_else(|| anyhow!("queue {queue} not listed by {}", self.nodes[via].name))?;
        self.nodes
            .iter()
            .position(|n| n.name == leader)
            .ok_or_else(|| anyhow!("leader {leader} is not a node of this cluster"))
    }

    /// (connections, channels) node `i` has open.
    pub async fn open_connections_and_channels(&self, i: usize) -> Result<(usize, usize)> {
        let count = |out: String| out.lines().filter(|l| !l.trim().is_empty()).count();
        let conns = self
            .ctl(
                i,
                &["list_connections", "pid", "--no-table-headers", "--quiet"],
            )
            .await?;
        let chans = self
            .ctl(
                i,
                &["list_channels", "pid", "--no-table-headers", "--quiet"],
            )
            .await?;
        Ok((count(conns), count(chans)))
    }

    /// Every node's AMQP URL, comma-separated: the list the services accept.
    pub fn amqp_urls(&self) -> String {
        self.nodes
            .iter()
            .map(Node::amqp_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(pid) = node.os_pid() {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
        // Keep the logs of a failed run for a look; a passing one leaves nothing behind.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
