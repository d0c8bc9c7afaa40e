"""A real Kafka broker for tests: Apache Kafka's own jars from Maven Central, run by the machine's
Java in KRaft mode (one process is broker and controller) on loopback, keeping its log in a folder
that outlives the process, so a test can stop, kill -9 and restart it and see what survived.

`ensure_kafka()` fetches the jars once (`scripts/build-parts kafka`); `kafka_broker()` is a
context manager and `KafkaBroker` the restartable server (tests/integration/kafka/conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from harness.builds import Measure, PartUnavailable, record, run_step
from harness.cache import binary_path, exclusive, subdir
from harness.procs import Server, ServerFailed, free_port, scratch_dir, start, tail, wait_until

KAFKA_VERSION = "4.4.0"
# Kafka logs through slf4j 1.7 into log4j 2.25.5 (both come with kafka_2.13 4.4.0) but its pom
# brings no binding between the two; the distribution's libs/ has this one, at that version.
LOG4J_VERSION = "2.25.5"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MAIN_CLASSES = ("kafka.Kafka", "kafka.tools.StorageTool")  # the broker and `kafka-storage`

READY_TIMEOUT = 60.0  # seconds; about 2 s on an idle machine, much more on 2 busy cores
FORMAT_TIMEOUT = 60.0
TOPIC_TIMEOUT = 30.0  # for a new topic's partitions to get their leader
STOP_GRACE = 30.0  # a controlled shutdown flushes every partition and, once, dumps the archive
NODE_ID = 1
CLASS_ARCHIVE = "kafka.jsa"  # AppCDS archive of the broker's classes, beside libs/

# Start-up flags. Measured on 2 shared cores, format + start until a client gets metadata: 5.5 s
# with only -Xmx, 4.1 s with these, 2.0 s with the class archive too (a restart: 4.2, 2.8, 1.5 s).
# C1 alone and serial GC leave the cores to class loading; the archive maps the classes a broker
# loads instead of parsing them from 45 jars.
JVM_FLAGS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Xshare:auto",  # an archive the JVM cannot use (another Java build) is skipped, not fatal
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

HOW_TO_GET = (
    f"Fetch Kafka {KAFKA_VERSION} ahead of time with `scripts/build-parts kafka` (needs Java 17+ "
    "and Maven: `apt-get install openjdk-17-jre-headless maven`, and Maven Central; about half a "
    "minute the first time, cached under ${KUBELAMBDA_CACHE:-~/.cache/kubelambda}). Its log is "
    f"logs/kafka-{KAFKA_VERSION}.log in that cache."
)

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kubelambda.harness</groupId><artifactId>kafka</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

# Everything to stdout, which is the broker's log file. The level is a system property so the
# storage tool can run quieter than the broker.
LOG_CONFIG = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:harness.log.level:-info}
rootLogger.appenderRef.out.ref = out
# The full configuration dump of every start would bury the lines that explain a failure.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
"""

T = TypeVar("T")


def ensure_kafka() -> Path:
    """The cached libs/ folder of Kafka's jars, fetched on first use; it appears whole or not at
    all (fetched and tried in a temp folder, then renamed), so a killed fetch leaves nothing."""
    home = binary_path("kafka", KAFKA_VERSION)
    if home.is_dir():
        return home / "libs"
    if os.environ.get("KUBELAMBDA_NO_BUILD"):
        raise PartUnavailable(
            f"kafka is missing at {home} and KUBELAMBDA_NO_BUILD is set. {HOW_TO_GET}"
        )
    with exclusive("kafka-fetch"):
        if not home.is_dir():
            _fetch(home)
    return home / "libs"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise PartUnavailable(
            f"`{name}` is not on PATH, and the Kafka broker needs it. {HOW_TO_GET}"
        )
    return found


def _fetch(home: Path) -> None:
    mvn, _ = _tool("mvn"), _tool("java")
    log = subdir("logs") / f"kafka-{KAFKA_VERSION}.log"
    measure = Measure()
    for stale in subdir("build").glob(f"kafka-{KAFKA_VERSION}-*"):  # of a fetch killed before
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"kafka-{KAFKA_VERSION}-", dir=subdir("build")) as tmp:
        work = Path(tmp) / home.name
        work.mkdir()
        (work / "pom.xml").write_text(POM)
        copy = [mvn, "-q", "-B", f"-Dmaven.repo.local={subdir('maven')}"]
        copy += [f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime"]
        run_step(
            [*copy, f"-DoutputDirectory={work / 'libs'}"],
            what=f"mvn copy-dependencies of org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
            log=log,
            cwd=work,
            env=os.environ,
            measure=measure,
            how_to_get=HOW_TO_GET,
            timeout=900.0,
        )
        _check_main_classes(work / "libs")
        _archive_classes(work, log=log, measure=measure)
        work.rename(home)  # the class archive holds relative class paths: it moves along
    entry = record("kafka (jars + class archive)", KAFKA_VERSION, measure)
    print(f"harness: fetched {entry.line()}", file=sys.stderr, flush=True)


def _check_main_classes(libs: Path) -> None:
    wanted = {name.replace(".", "/") + ".class": name for name in MAIN_CLASSES}
    for jar in libs.glob("*.jar"):
        with zipfile.ZipFile(jar) as archive:
            for entry in wanted.keys() & set(archive.namelist()):
                del wanted[entry]
    if wanted:
        raise PartUnavailable(
            f"no jar in {libs} holds {', '.join(wanted.values())}: Kafka {KAFKA_VERSION} moved "
            f"them; name the artifact that has them in harness/kafka.py's POM. {HOW_TO_GET}"
        )


def _archive_classes(home: Path, *, log: Path, measure: Measure) -> None:
    """Start a broker from `home` once: this proves the jars make a broker before the cache keeps
    them, and on the way out the JVM writes the class archive that later starts map."""
    began = time.monotonic()
    scratch = scratch_dir("kafka-archive")
    broker = KafkaBroker(
        kafka_home=home,
        store_dir=scratch,
        port=free_port(),
        controller_port=free_port(),
        log=log,
        # Its warnings list each class it cannot archive (old bytecode): hundreds of lines.
        broker_jvm_flags=(f"-XX:ArchiveClassesAtExit={CLASS_ARCHIVE}", "-Xlog:cds=off"),
    )
    try:
        broker.start()
    except ServerFailed as exc:
        raise PartUnavailable(
            f"Kafka {KAFKA_VERSION}'s jars made no broker: {exc}\n{HOW_TO_GET}"
        ) from exc
    finally:
        broker.stop()  # the JVM writes the archive as it exits
        shutil.rmtree(scratch, ignore_errors=True)
    if not (home / CLASS_ARCHIVE).is_file():  # only slower starts follow: say so, carry on
        print(f"harness: no class archive written; see {log}", file=sys.stderr, flush=True)
    seconds = time.monotonic() - began
    measure.add(what="a first broker start", seconds=seconds, process_mib=0.0, group_mib=0.0)


def new_cluster_id() -> str:
    """A random cluster id as `kafka-storage random-uuid` makes one: 16 random bytes in URL-safe
    base64 without padding, never starting with '-' (it would read as a command-line flag)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a loop of its own in a worker thread, so the harness's blocking calls
    work from a fixture and from `anyio.to_thread` alike, whether or not a loop runs here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class KafkaBroker:
    """One Kafka broker and KRaft controller in one JVM, on fixed loopback ports and a fixed
    store folder, started and ended at will.

    The ports and the store outlive the process, so `restart()` brings back the same cluster with
    whatever its log kept; `kill()` is a crash (SIGKILL, nothing flushed on the way out). With
    `sasl_users` (name -> password) a second listener, `sasl_bootstrap`, takes SASL/PLAIN.
    """

    def __init__(
        self,
        *,
        kafka_home: Path,
        store_dir: Path,
        port: int,
        controller_port: int,
        log: Path,
        sasl_users: Mapping[str, str] | None = None,
        sasl_port: int | None = None,
        ready_timeout: float = READY_TIMEOUT,
        broker_jvm_flags: tuple[str, ...] = (),
        host: str = "127.0.0.1",
    ) -> None:
        for text in (*(sasl_users or {}).keys(), *(sasl_users or {}).values()):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", text):  # they go into a JAAS string as-is
                raise ValueError(f"SASL user or password {text!r}: letters, digits, _ . - only")
        if sasl_users and sasl_port is None:
            raise ValueError("sasl_users needs a sasl_port for their listener")
        self.kafka_home = kafka_home
        self.store_dir = store_dir
        self.port = port
        self.controller_port = controller_port
        self.log = log
        self.sasl_users = dict(sasl_users or {})
        self.sasl_port = sasl_port
        self.ready_timeout = ready_timeout
        self.broker_jvm_flags = broker_jvm_flags
        # Where clients connect (and what the broker advertises): loopback, or the e2e node's
        # address, which pods reach too. The controller listener stays on loopback.
        self.host = host
        self.cluster_id: str | None = None  # read from the store, or made when formatting it
        self.start_seconds: float | None = None  # how long the last start took, formatting too
        self.process: Server | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        if not self.sasl_users:
            raise RuntimeError("this broker has no SASL listener: start it with sasl_users")
        return f"{self.host}:{self.sasl_port}"

    @property
    def log_dir(self) -> Path:
        return self.store_dir / "kraft"

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def log_tail(self, lines: int = 40) -> str:
        if self.process is None:
            return f"--- kafka: never started (log {self.log}) ---\n{tail(self.log, lines)}"
        return self.process.log_tail(lines)

    def server_properties(self) -> str:
        listeners = {"PLAINTEXT": self.port}
        if self.sasl_users and self.sasl_port is not None:
            listeners["SASL_PLAINTEXT"] = self.sasl_port
        advertised = ",".join(f"{name}://{self.host}:{port}" for name, port in listeners.items())
        lines = [
            "process.roles=broker,controller",
            f"node.id={NODE_ID}",
            f"controller.quorum.voters={NODE_ID}@127.0.0.1:{self.controller_port}",
            "controller.listener.names=CONTROLLER",
            f"listeners={advertised},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners={advertised}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map="
            + ",".join(f"{name}:{name}" for name in listeners)
            + ",CONTROLLER:PLAINTEXT",
            f"log.dirs={self.log_dir}",
            # One broker: every internal topic has one replica. One partition each, as the 50
            # of a real cluster cost time at the first group join and prove nothing here.
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "share.coordinator.state.topic.num.partitions=1",
            "default.replication.factor=1",
            "group.initial.rebalance.delay.ms=0",
            # After a kill -9 the controller holds the dead incarnation's registration until its
            # session lapses (9 s by default) before the restarted broker may register.
            "broker.heartbeat.interval.ms=500",
            "broker.session.timeout.ms=3000",
            # Kafka's default is true; here a topic that no test created is an error, not a
            # silent new topic.
            "auto.create.topics.enable=false",
            "num.network.threads=2",
            "num.io.threads=2",
        ]
        if self.sasl_users:
            users = " ".join(f'user_{name}="{secret}"' for name, secret in self.sasl_users.items())
            lines += [
                "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
            ]
        return "\n".join(lines) + "\n"

    def _java(self, main: str, *args: str, level: str, extra: tuple[str, ...] = ()) -> list[str]:
        archive = self.kafka_home / CLASS_ARCHIVE
        return [
            _tool("java"),
            *JVM_FLAGS,
            *([f"-XX:SharedArchiveFile={CLASS_ARCHIVE}"] if archive.is_file() else []),
            *extra,
            f"-Dlog4j2.configurationFile={self.store_dir / 'log4j2.properties'}",
            f"-Dharness.log.level={level}",
            f"-XX:ErrorFile={self.store_dir / 'hs_err_pid%p.log'}",
            # Relative, run from kafka_home: the class archive stays valid when that folder moves.
            "-cp",
            "libs/*",
            main,
            *args,
        ]

    def _format(self, config: Path) -> None:
        """Format the store as KRaft needs before a first start, with a new cluster id; a store
        formatted before keeps its own."""
        meta = self.log_dir / "meta.properties"
        if meta.is_file():
            found = re.search(r"^cluster\.id=(\S+)$", meta.read_text(), re.MULTILINE)
            self.cluster_id = found.group(1) if found else None
            return
        self.cluster_id = new_cluster_id()
        argv = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(config),
            level="warn",
        )
        tool = start("kafka-storage format", argv, log=self.log, cwd=self.kafka_home)
        try:
            code = tool.popen.wait(timeout=FORMAT_TIMEOUT)
        except subprocess.TimeoutExpired:
            tool.stop(grace=1.0)
            code = None
        if code != 0:
            raise ServerFailed(f"formatting {self.log_dir} failed (exit {code})\n{tool.log_tail()}")

    def start(self) -> None:
        """Start the broker (formatting a new store first) and return once a client gets this
        cluster's metadata with the broker in it; fail naming the log's tail if it exits first or
        is not ready by `ready_timeout`. Blocks: from async code, call it through a thread."""
        if self.alive():
            raise RuntimeError(f"the Kafka broker at {self.bootstrap} is already running")
        if importlib.util.find_spec("aiokafka") is None:  # else every readiness probe fails
            raise PartUnavailable(
                "the Kafka harness talks to its broker through aiokafka, which is not installed: "
                "`pip install 'aiokafka>=0.11'` (a dev dependency in pyproject.toml)"
            )
        began = time.monotonic()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "server.properties"
        config.write_text(self.server_properties())
        (self.store_dir / "log4j2.properties").write_text(LOG_CONFIG)
        self._format(config)
        argv = self._java("kafka.Kafka", str(config), level="info", extra=self.broker_jvm_flags)
        # One log for the broker's whole life: each start appends, after its command line.
        self.process = start("kafka", argv, log=self.log, cwd=self.kafka_home)
        wait_until(
            self._ready,
            what=f"Kafka broker at {self.bootstrap} serving cluster {self.cluster_id}",
            timeout=self.ready_timeout,
            watch=[self.process],
        )
        self.start_seconds = time.monotonic() - began

    @asynccontextmanager
    async def admin(self, *, request_timeout: float = 10.0) -> AsyncIterator[Any]:
        """An aiokafka admin client connected to the plaintext listener, closed at the end."""
        # Imported here, as every harness module imports this one through `binaries` and only
        # the Kafka tests need aiokafka.
        from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

        client = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=int(request_timeout * 1000)
        )
        try:
            await client.start()
            yield client
        finally:
            await client.close()

    def _ready(self) -> bool:
        # A bare connect first: until the broker is unfenced its listener refuses, and a refused
        # aiokafka client logs an error each time.
        socket.create_connection((self.host, self.port), timeout=1.0).close()
        return _run_async(self._serves_us)

    async def _serves_us(self) -> bool:
        async with self.admin(request_timeout=2.0) as admin:
            cluster = await admin.describe_cluster()
        # Another broker that took the port between our runs would answer too: check it is ours.
        if cluster["cluster_id"] != self.cluster_id:
            raise ConnectionError(f"{self.bootstrap} serves cluster {cluster['cluster_id']!r}")
        return any(broker["node_id"] == NODE_ID for broker in cluster["brokers"])

    async def create_topic(
        self,
        name: str,
        *,
        partitions: int = 1,
        configs: Mapping[str, str] | None = None,
    ) -> None:
        """Create `name` with one replica and return once every partition has its leader, so a
        producer may write at once; Kafka's refusal comes back as its own error
        (TopicAlreadyExistsError, InvalidPartitionsError, ...)."""
        from aiokafka.admin import NewTopic
        from aiokafka.errors import for_code  # type: ignore[import-untyped]

        deadline = time.monotonic() + TOPIC_TIMEOUT
        async with self.admin() as admin:
            topic = NewTopic(name, partitions, 1, topic_configs=dict(configs or {}))
            response = await admin.create_topics([topic], timeout_ms=int(TOPIC_TIMEOUT * 1000))
            for topic_name, code, *message in response.topic_errors:
                if code != 0:
                    raise for_code(code)(f"creating topic {topic_name!r}: {message}")
            while True:
                (described,) = await admin.describe_topics([name])
                leaders = [p["leader"] for p in described["partitions"]]
                ready = len(leaders) == partitions and all(leader >= 0 for leader in leaders)
                if described["error_code"] == 0 and ready:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topic {name!r}: not every partition has a leader yet")
                await asyncio.sleep(0.05)

    def stop(self, *, grace: float = STOP_GRACE) -> None:
        """SIGTERM (a controlled shutdown that flushes every partition), SIGKILL after `grace`."""
        if self.process is not None:
            self.process.stop(grace=grace)

    def kill(self, *, timeout: float = 10.0) -> None:
        """SIGKILL, as a crash or an OOM kill would: the log keeps only what reached the disk (or
        the kernel's page cache), and the next start recovers it."""
        process = self.process
        if process is None or not process.alive():
            return
        with contextlib.suppress(ProcessLookupError):  # it exited by itself: wait() reaps it
            os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait(timeout=timeout)

    def restart(self) -> None:
        """Stop it if it runs, then start it again on the same ports and store."""
        self.stop()
        self.start()


def _default_log_dir() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"kafka-{stamp}-", dir=subdir("logs")))


@contextmanager
def kafka_broker(
    *,
    store_dir: Path | None = None,
    log_dir: Path | None = None,
    sasl_users: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
    host: str = "127.0.0.1",
) -> Iterator[KafkaBroker]:
    """Start a broker on free loopback ports; yield it once it is ready; stop it however the body
    ends. Without `store_dir` the store is a temp folder removed at the end; a given one is left
    to its owner."""
    libs = ensure_kafka()
    with ExitStack() as cleanup:
        if store_dir is None:
            store_dir = scratch_dir("kafka")
            cleanup.callback(shutil.rmtree, store_dir, ignore_errors=True)
        logs = log_dir if log_dir is not None else _default_log_dir()
        broker = KafkaBroker(
            kafka_home=libs.parent,
            store_dir=store_dir,
            port=free_port(),
            controller_port=free_port(),
            log=logs / "kafka.log",
            sasl_users=sasl_users,
            sasl_port=free_port() if sasl_users else None,
            ready_timeout=ready_timeout,
            host=host,
        )
        cleanup.callback(broker.stop)  # runs before the store's removal: callbacks unwind LIFO
        broker.start()
        yield broker


def kafka_for_pytest(tmp_path_factory: Any, **kwargs: Any) -> Iterator[KafkaBroker]:
    """For a yield-fixture: `yield from kafka_for_pytest(tmp_path_factory, sasl_users=...)`."""
    log_dir = tmp_path_factory.mktemp("kafka-logs")
    with kafka_broker(log_dir=log_dir, **kwargs) as broker:
        yield broker
