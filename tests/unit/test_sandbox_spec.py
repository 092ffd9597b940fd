"""The sandbox container's spec, without Docker: every hardening flag is in the body Docker
is sent, and every limit follows the settings and the request's profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assay.config import ExecutionSettings
from assay.execution_engine.isolation import Isolation, load_seccomp_profile
from assay.execution_engine.sandbox_spec import (
    INIT_PATH,
    LABEL_ENGINE,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_SANDBOX,
    Profile,
    SandboxSpec,
    sandbox_spec,
)

MIB = 1024 * 1024
DEFAULT = Profile(256, 1.0)


def isolation(runtime: str | None = None, seccomp: Path | None = None) -> Isolation:
    return Isolation(
        runtime=runtime or "runc",
        host_kernel="6.1.0-test",
        seccomp=load_seccomp_profile(seccomp, runtime),
        gvisor=runtime == "runsc",
    )


def spec(
    profile: Profile = DEFAULT,
    iso: Isolation | None = None,
    **settings: Any,
) -> SandboxSpec:
    return sandbox_spec(
        ExecutionSettings(engine_id="unit", **settings),
        profile,
        isolation=iso or isolation(settings.get("runtime")),
        owner="unit.0123",
        token="0123456789abcdef",
    )


def host(result: SandboxSpec) -> dict[str, Any]:
    config: dict[str, Any] = result.config["HostConfig"]
    return config


def test_the_sandbox_is_locked_down() -> None:
    hc = host(spec())
    assert hc["CapDrop"] == ["ALL"]
    assert "CapAdd" not in hc and "Privileged" not in hc
    assert "no-new-privileges:true" in hc["SecurityOpt"]
    assert hc["ReadonlyRootfs"] is True
    assert hc["NetworkMode"] == "none"
    assert spec().config["NetworkDisabled"] is True, "Docker sets up no networking for it"
    assert hc["IpcMode"] == "private"
    assert hc["LogConfig"] == {"Type": "none", "Config": {}}
    assert hc["OomScoreAdj"] == 500
    assert "Binds" not in hc and "Mounts" not in hc, "no host path is ever mounted"


def test_it_runs_the_supervisor_as_the_sandbox_user_in_its_workspace() -> None:
    config = spec(image="assay-sandbox-python:test").config
    assert config["Image"] == "assay-sandbox-python:test"
    assert config["Cmd"] == [INIT_PATH]
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/workspace"
    assert config["Tty"] is False


def test_stdin_stays_open_for_the_program_and_closes_with_the_attach() -> None:
    config = spec().config
    # StdinOnce is the lifeline: our attach ends, the sandbox's stdin closes, PID 1 ends.
    assert config["OpenStdin"] is True and config["StdinOnce"] is True
    assert config["AttachStdin"] and config["AttachStdout"] and config["AttachStderr"]
    assert host(spec())["AutoRemove"] is True, "gone once stopped, even if its owner is dead"


def test_the_seccomp_profile_is_sent_whole() -> None:
    opts = [opt for opt in host(spec())["SecurityOpt"] if opt.startswith("seccomp=")]
    assert len(opts) == 1
    sent = json.loads(opts[0].removeprefix("seccomp="))
    assert sent == json.loads(load_seccomp_profile(None).json)
    assert sent["defaultAction"] == "SCMP_ACT_ERRNO"
    assert any("io_uring_setup" in rule["names"] for rule in sent["syscalls"])


def test_a_configured_seccomp_profile_replaces_assays(tmp_path: Path) -> None:
    path = tmp_path / "custom.json"
    path.write_text('{"defaultAction": "SCMP_ACT_LOG", "syscalls": []}')
    opts = host(spec(iso=isolation(seccomp=path)))["SecurityOpt"]
    assert 'seccomp={"defaultAction":"SCMP_ACT_LOG","syscalls":[]}' in opts
    assert "no-new-privileges:true" in opts


def test_the_runtime_goes_in_host_config_only_when_configured() -> None:
    assert "Runtime" not in host(spec())
    gvisor = spec(runtime="runsc")
    assert host(gvisor)["Runtime"] == "runsc"
    assert "Runtime" not in gvisor.config, "Docker ignores a runtime outside HostConfig"
    sent = json.loads(host(gvisor)["SecurityOpt"][1].removeprefix("seccomp="))
    assert sent == json.loads(load_seccomp_profile(None, "runsc").json), "gVisor's variant"


def test_pid_1_is_told_what_isolation_to_expect() -> None:
    env = spec().config["Env"]
    assert "ASSAY_EXPECT_KERNEL==6.1.0-test" in env
    assert "ASSAY_EXPECT_IO_URING_ERRNO=1" in env
    assert "ASSAY_EXPECT_KERNEL=!6.1.0-test" in spec(runtime="runsc").config["Env"]
    assert "HOME=/workspace" in env and "PYTHONUNBUFFERED=1" in env
    assert len(env) == len({entry.partition("=")[0] for entry in env}), "no variable twice"


def test_it_is_labelled_with_its_engine_owner_and_name() -> None:
    result = spec()
    assert result.name == "assay-0123456789abcdef"
    assert result.config["Hostname"] == result.name
    assert result.config["Labels"] == {
        LABEL_MANAGED: "true",
        LABEL_ENGINE: "unit",
        LABEL_OWNER: "unit.0123",
        LABEL_SANDBOX: "0123456789abcdef",
    }


@pytest.mark.parametrize(
    ("profile", "memory", "nano_cpus"),
    [
        (Profile(256, 1.0), 256 * MIB, 1_000_000_000),
        (Profile(1024, 0.5), 1024 * MIB, 500_000_000),
        (Profile(17, 2.25), 17 * MIB, 2_250_000_000),
    ],
)
def test_memory_and_cpus_follow_the_profile(profile: Profile, memory: int, nano_cpus: int) -> None:
    hc = host(spec(profile))
    assert hc["Memory"] == memory
    assert hc["MemorySwap"] == memory, "no swap beyond the memory limit"
    assert hc["NanoCpus"] == nano_cpus


def test_the_shared_limits_follow_the_settings() -> None:
    hc = host(
        spec(
            pids_limit=77,
            open_files_limit=99,
            workspace_size_mb=10,
            tmp_size_mb=20,
            shm_size_mb=3,
        )
    )
    assert hc["PidsLimit"] == 77
    assert hc["ShmSize"] == 3 * MIB
    assert hc["Tmpfs"] == {
        "/workspace": "rw,exec,nosuid,nodev,size=10m,uid=10001,gid=10001,mode=0700",
        "/tmp": "rw,nosuid,nodev,noexec,size=20m,mode=1777",
    }
    assert hc["Ulimits"] == [
        {"Name": "nofile", "Soft": 99, "Hard": 99},
        {"Name": "fsize", "Soft": 20 * MIB, "Hard": 20 * MIB},  # the larger tmpfs
        {"Name": "core", "Soft": 0, "Hard": 0},
    ]


def test_the_defaults() -> None:
    hc = host(spec())
    assert hc["PidsLimit"] == 128
    assert (
        hc["Tmpfs"]["/workspace"] == "rw,exec,nosuid,nodev,size=64m,uid=10001,gid=10001,mode=0700"
    )
    assert hc["Tmpfs"]["/tmp"] == "rw,nosuid,nodev,noexec,size=64m,mode=1777"
    assert {u["Name"]: u["Hard"] for u in hc["Ulimits"]} == {
        "nofile": 256,
        "fsize": 64 * MIB,
        "core": 0,
    }


def test_it_is_pure_and_serialisable() -> None:
    assert spec() == spec()
    assert spec().config is not spec().config
    json.dumps(spec(runtime="runsc").config)
