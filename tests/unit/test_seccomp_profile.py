"""Assay's seccomp profile (``seccomp.json``) and the script that derives it from Docker's
default profile (``scripts/derive-seccomp``; docs/seccomp.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import assay.execution_engine

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "derive-seccomp"
PROFILE_PATH = Path(assay.execution_engine.__file__).with_name("seccomp.json")
PROFILE: dict[str, Any] = json.loads(PROFILE_PATH.read_text())

EPERM, ENOSYS = 1, 38
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP
DENIED = {
    "io_uring_setup": EPERM,
    "io_uring_enter": EPERM,
    "io_uring_register": EPERM,
    "userfaultfd": EPERM,
    "bpf": EPERM,
    "perf_event_open": EPERM,
    "add_key": EPERM,
    "request_key": EPERM,
    "keyctl": EPERM,
    "unshare": EPERM,
    "setns": EPERM,
    "clone3": ENOSYS,
}


def rules(action: str, name: str) -> list[dict[str, Any]]:
    return [
        rule for rule in PROFILE["syscalls"] if rule["action"] == action and name in rule["names"]
    ]


def derive(docker_profile: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "default.json"
    source.write_text(json.dumps(docker_profile))
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(source)], capture_output=True, text=True, check=False
    )


def test_unlisted_calls_fail() -> None:
    assert PROFILE["defaultAction"] == "SCMP_ACT_ERRNO"
    assert PROFILE.get("defaultErrnoRet", EPERM) == EPERM


@pytest.mark.parametrize("name", sorted(DENIED))
def test_a_denied_call_is_never_allowed(name: str) -> None:
    assert rules("SCMP_ACT_ALLOW", name) == []


@pytest.mark.parametrize(("name", "errno"), sorted(DENIED.items()))
def test_a_denied_call_has_its_own_unconditional_errno_rule(name: str, errno: int) -> None:
    (rule,) = rules("SCMP_ACT_ERRNO", name)
    assert rule["errnoRet"] == errno
    assert (rule["args"], rule["includes"], rule["excludes"]) == ([], {}, {})


def test_no_rule_depends_on_capabilities() -> None:
    for rule in PROFILE["syscalls"]:
        assert "caps" not in rule.get("includes", {}), rule
        assert "caps" not in rule.get("excludes", {}), rule


def test_clone_is_allowed_only_without_namespace_flags() -> None:
    condition = {"value": NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}
    s390 = ["s390", "s390x"]
    assert [
        (rule["names"], rule["args"], rule["includes"], rule["excludes"])
        for rule in rules("SCMP_ACT_ALLOW", "clone")
    ] == [
        (["clone"], [{"index": 0, **condition}], {}, {"arches": s390}),
        (["clone"], [{"index": 1, **condition}], {"arches": s390}, {}),
    ]
    assert rules("SCMP_ACT_ERRNO", "clone") == []  # a namespace flag: the default action


@pytest.mark.parametrize(
    "name", ["read", "write", "mmap", "futex", "execve", "wait4", "exit_group", "socketpair"]
)
def test_ordinary_calls_are_allowed_unconditionally(name: str) -> None:
    assert any(
        not rule["args"] and not rule["includes"] and not rule["excludes"]
        for rule in rules("SCMP_ACT_ALLOW", name)
    )


def test_the_committed_profile_is_what_the_script_writes() -> None:
    """Deriving is idempotent, so deriving from the committed profile must give it back,
    byte for byte: it was written by the script, and not edited by hand since."""
    derived = subprocess.run(
        [sys.executable, str(SCRIPT), str(PROFILE_PATH)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert derived.stdout == PROFILE_PATH.read_text()


def allow(names: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "names": names,
        "action": "SCMP_ACT_ALLOW",
        "args": [],
        "comment": "",
        "includes": {},
        "excludes": {},
        **fields,
    }


def deny(names: list[str], errno: int) -> dict[str, Any]:
    return {**allow(names), "action": "SCMP_ACT_ERRNO", "errnoRet": errno}


def test_the_script_resolves_capabilities_and_adds_the_denials(tmp_path: Path) -> None:
    mask_arg0 = [{"index": 0, "value": NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}]
    mask_arg1 = [{"index": 1, "value": NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}]
    admin = {"caps": ["CAP_SYS_ADMIN"]}
    docker = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}],
        "syscalls": [
            allow(["read", "io_uring_setup", "clone", "write", "io_uring_enter"]),
            allow(["ptrace"], args=None, includes={"minKernel": "4.8"}),
            allow(["arch_prctl"], includes={"arches": ["amd64"]}),
            allow(["bpf", "clone", "mount"], includes=admin),
            allow(["chroot"], includes={"caps": ["CAP_SYS_CHROOT"], "arches": ["amd64"]}),
            allow(["clone"], args=mask_arg0, excludes={**admin, "arches": ["s390", "s390x"]}),
            allow(
                ["clone"], args=mask_arg1, includes={"arches": ["s390", "s390x"]}, excludes=admin
            ),
            allow(["clone"], args=mask_arg0),  # would let s390 set namespace flags (arg 1)
            allow(["keyctl"], excludes={"arches": ["arm"]}),
            deny(["clone3"], ENOSYS) | {"excludes": admin},
        ],
    }
    result = derive(docker, tmp_path)
    assert result.returncode == 0, result.stderr
    comment = "Assay: denied (docs/seccomp.md)"
    assert json.loads(result.stdout) == {
        **docker,
        "syscalls": [
            allow(["read", "write"]),
            allow(["ptrace"], args=None, includes={"minKernel": "4.8"}),
            allow(["arch_prctl"], includes={"arches": ["amd64"]}),
            allow(["clone"], args=mask_arg0, excludes={"arches": ["s390", "s390x"]}),
            allow(["clone"], args=mask_arg1, includes={"arches": ["s390", "s390x"]}),
            deny([name for name, errno in DENIED.items() if errno == EPERM], EPERM)
            | {"comment": comment},
            deny(["clone3"], ENOSYS) | {"comment": comment},
        ],
    }


def test_the_script_refuses_a_profile_that_allows_by_default(tmp_path: Path) -> None:
    result = derive({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}, tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert "SCMP_ACT_ERRNO" in result.stderr


def test_the_script_refuses_a_profile_where_nothing_could_fork(tmp_path: Path) -> None:
    result = derive({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow(["read"])]}, tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert "clone" in result.stderr
