"""What a sandbox proves about its isolation, checked against what was configured; and the
registration of gVisor's runsc in Docker's daemon.json."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from assay.errors import ConfigurationError, RuntimeNotAvailableError
from assay.execution_engine.isolation import Isolation, load_seccomp_profile
from assay.execution_engine.output import Trailer

HOST = "6.1.0-test-amd64"
REGISTER = Path(__file__).parents[2] / "scripts" / "register-runsc"


def trailer(kernel: str | None = HOST, io_uring: int = errno.EPERM) -> Trailer:
    return Trailer(exit_code=0, kernel=kernel, seccomp=2, io_uring_errno=io_uring)


def isolation(runtime: str) -> Isolation:
    gvisor = runtime == "runsc"
    return Isolation(runtime, HOST, load_seccomp_profile(None, runtime), gvisor=gvisor)


def test_runc_shares_the_host_kernel_and_the_profile_is_in_force() -> None:
    facts = isolation("runc").check(trailer())
    assert facts["runtime"] == f"runc (the sandbox shares the host's kernel {HOST})"
    assert facts["seccomp"].startswith("assay (sha256:")
    assert facts["seccomp"].endswith("in force: io_uring_setup refused with EPERM")


def test_gvisor_is_proven_by_a_kernel_other_than_the_hosts() -> None:
    facts = isolation("runsc").check(trailer(kernel="4.4.0"))
    assert facts["runtime"] == f"runsc (the sandbox sees kernel 4.4.0, the host {HOST})"
    assert facts["sandbox_kernel"] == "4.4.0"


def test_runsc_configured_but_the_host_kernel_seen_is_refused() -> None:
    """What happened before: Docker ignored the runtime and sandboxes ran under runc."""
    with pytest.raises(RuntimeNotAvailableError, match="gVisor is not in force"):
        isolation("runsc").check(trailer(kernel=HOST))


def test_runc_configured_but_another_kernel_seen_is_refused() -> None:
    with pytest.raises(RuntimeNotAvailableError, match="not the host's"):
        isolation("runc").check(trailer(kernel="4.4.0"))


@pytest.mark.parametrize(("answer", "said"), [(0, "allowed"), (errno.ENOSYS, "ENOSYS")])
def test_io_uring_not_refused_with_eperm_means_the_profile_is_not_in_force(
    answer: int, said: str
) -> None:
    with pytest.raises(RuntimeNotAvailableError, match=f"not in force: io_uring_setup was {said}"):
        isolation("runc").check(trailer(io_uring=answer))


def test_a_sandbox_that_says_nothing_proves_nothing() -> None:
    with pytest.raises(RuntimeNotAvailableError, match="did not report its kernel"):
        isolation("runc").check(trailer(kernel=None))


def test_the_gvisor_variant_differs_only_in_clone3() -> None:
    runc, gvisor = load_seccomp_profile(None, "runc"), load_seccomp_profile(None, "runsc")
    assert runc.sha256 != gvisor.sha256
    rules = json.loads(gvisor.json)["syscalls"]
    assert [r["action"] for r in rules if "clone3" in r["names"]] == ["SCMP_ACT_ALLOW"]
    denied = {n for r in rules if r["action"] == "SCMP_ACT_ERRNO" for n in r["names"]}
    assert {"io_uring_setup", "unshare", "keyctl", "bpf"} <= denied


def test_an_operator_profile_is_loaded_and_a_broken_one_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine.json"
    mine.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}')
    profile = load_seccomp_profile(mine)
    assert (profile.name, profile.built_in) == ("mine.json", False)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot load the seccomp profile"):
        load_seccomp_profile(broken)


def register(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REGISTER), "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_runsc_is_merged_into_daemon_json_keeping_every_key(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    existing = {"log-level": "warn", "runtimes": {"kata": {"path": "/usr/bin/kata"}}}
    config.write_text(json.dumps(existing))
    assert register(config).stdout.strip() == "changed"
    merged = json.loads(config.read_text())
    assert merged["log-level"] == "warn"
    assert merged["runtimes"]["kata"] == {"path": "/usr/bin/kata"}
    assert merged["runtimes"]["runsc"] == {
        "path": "/usr/bin/runsc",
        "runtimeArgs": ["--network=none", "--oci-seccomp"],
    }
    assert register(config).stdout.strip() == "unchanged"


def test_a_runsc_entry_already_there_is_kept_with_a_warning(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    config.write_text('{"runtimes": {"runsc": {"path": "/opt/runsc"}}}')
    completed = register(config)
    assert completed.stdout.strip() == "unchanged"
    assert "without --network=none --oci-seccomp" in completed.stderr
    assert json.loads(config.read_text()) == {"runtimes": {"runsc": {"path": "/opt/runsc"}}}


def test_a_missing_daemon_json_is_created_and_a_broken_one_left_alone(tmp_path: Path) -> None:
    fresh = tmp_path / "docker" / "daemon.json"
    assert register(fresh).stdout.strip() == "changed"
    assert "runsc" in json.loads(fresh.read_text())["runtimes"]
    broken = tmp_path / "broken.json"
    broken.write_text("{oops")
    completed = register(broken)
    assert completed.returncode == 1 and "cannot merge" in completed.stderr
    assert broken.read_text() == "{oops"


def test_every_sandbox_is_told_what_to_expect() -> None:
    assert isolation("runc").expectations() == {
        "ASSAY_EXPECT_KERNEL": f"={HOST}",
        "ASSAY_EXPECT_IO_URING_ERRNO": str(errno.EPERM),
    }
    assert isolation("runsc").expectations()["ASSAY_EXPECT_KERNEL"] == f"!{HOST}"
