"""The isolation a sandbox really has, proven from inside it rather than read from settings.

Every sandbox's PID 1 reports, in each trailer, the kernel release it sees, its seccomp mode
and what ``io_uring_setup`` answered (``sandbox_init.c``). :class:`Isolation` holds what the
engine expects (the OCI runtime, the seccomp profile) and checks each report against it: a
sandbox under gVisor sees gVisor's kernel, not the host's; one under runc shares the host's;
Assay's profile refuses ``io_uring_setup`` with EPERM (Docker 20.10's default allows it).
"""

from __future__ import annotations

import errno
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from assay.errors import ConfigurationError, RuntimeNotAvailableError
from assay.execution_engine.output import Trailer

__all__ = ["GVISOR", "Isolation", "SeccompProfile", "load_seccomp_profile"]

#: OCI runtimes that put a kernel of their own between the program and the host.
GVISOR = "runsc"
_HOST_KERNEL_RUNTIMES = frozenset({"runc", "crun"})


@dataclass(frozen=True, slots=True)
class SeccompProfile:
    """A seccomp profile in Docker's JSON format, as sent with every container."""

    name: str
    #: Compact JSON, the form ``--security-opt seccomp=`` takes.
    json: str
    sha256: str
    built_in: bool

    @property
    def label(self) -> str:
        return f"{self.name} (sha256:{self.sha256[:12]})"


def load_seccomp_profile(path: Path | None, runtime: str | None = None) -> SeccompProfile:
    """Assay's own profile (``seccomp.json``, see docs/seccomp.md), or the file at ``path``.

    Under gVisor (``runtime`` runsc, registered with ``--oci-seccomp``) the built-in profile
    allows ``clone3``: gVisor's kernel answers it with ENOSYS itself, whereas its seccomp
    would answer EPERM whatever ``errnoRet`` says, and glibc then fails to start threads
    instead of falling back to ``clone`` (whose namespace flags stay denied).

    Raises:
        ConfigurationError: the file cannot be read or is not a JSON seccomp profile.
    """
    try:
        if path is None:
            text = (resources.files("assay.execution_engine") / "seccomp.json").read_text()
        else:
            text = path.read_text()
        profile = json.loads(text)
    except (OSError, ValueError) as exc:
        where = path or "built in"
        raise ConfigurationError(f"cannot load the seccomp profile {where}: {exc}") from exc
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise ConfigurationError(
            f"{path or 'the built-in profile'} is not a seccomp profile (no defaultAction)"
        )
    if path is None and runtime == GVISOR:
        profile = _for_gvisor(profile)
    compact = json.dumps(profile, separators=(",", ":"), sort_keys=True)
    return SeccompProfile(
        name="assay" if path is None else path.name,
        json=compact,
        sha256=hashlib.sha256(compact.encode()).hexdigest(),
        built_in=path is None,
    )


def _for_gvisor(profile: dict[str, Any]) -> dict[str, Any]:
    rules = []
    for rule in profile["syscalls"]:
        names = [name for name in rule["names"] if name != "clone3"]
        if names:
            rules.append({**rule, "names": names})
    rules.append(
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ALLOW",
            "comment": "Assay under gVisor: its kernel answers ENOSYS (docs/seccomp.md)",
        }
    )
    return {**profile, "syscalls": rules}


@dataclass(frozen=True, slots=True)
class Isolation:
    """What every sandbox of one engine must really have."""

    #: The runtime containers are created with: the configured one or Docker's default.
    runtime: str
    host_kernel: str
    seccomp: SeccompProfile
    #: Whether that runtime is gVisor (named runsc, or registered with runsc's path).
    gvisor: bool = False

    def expectations(self) -> dict[str, str]:
        """Environment for every sandbox's PID 1, which checks it before it runs anything
        and removes it from the program's environment (``sandbox_init.c``)."""
        expected = {"ASSAY_EXPECT_KERNEL": ("!" if self.gvisor else "=") + self.host_kernel}
        if self.seccomp.built_in:
            expected["ASSAY_EXPECT_IO_URING_ERRNO"] = str(errno.EPERM)
        return expected

    def check(self, trailer: Trailer) -> dict[str, str]:
        """The facts a sandbox reported, once they match what was configured.

        Raises:
            RuntimeNotAvailableError: the sandbox did not have the configured runtime or
                seccomp profile in force (the verdict of its program must not be used).
        """
        kernel = trailer.kernel
        if kernel is None:
            raise RuntimeNotAvailableError("the sandbox did not report its kernel")
        shares_host = kernel == self.host_kernel
        if self.gvisor and shares_host:
            raise RuntimeNotAvailableError(
                f"runtime {GVISOR!r} is configured but the sandbox ran on the host's kernel "
                f"({kernel}): gVisor is not in force"
            )
        if not self.gvisor and self.runtime in _HOST_KERNEL_RUNTIMES and not shares_host:
            raise RuntimeNotAvailableError(
                f"runtime {self.runtime!r} is configured but the sandbox saw kernel {kernel}, "
                f"not the host's ({self.host_kernel})"
            )
        refused = trailer.io_uring_errno
        if self.seccomp.built_in and refused != errno.EPERM:
            answer = "allowed" if refused == 0 else errno.errorcode.get(refused or 0, str(refused))
            raise RuntimeNotAvailableError(
                f"Assay's seccomp profile is not in force: io_uring_setup was {answer} in the "
                "sandbox (it must be refused with EPERM)"
            )
        if shares_host:
            in_force = f"{self.runtime} (the sandbox shares the host's kernel {kernel})"
        else:
            in_force = (
                f"{self.runtime} (the sandbox sees kernel {kernel}, the host {self.host_kernel})"
            )
        seccomp = self.seccomp.label
        if self.seccomp.built_in:
            seccomp += ", in force: io_uring_setup refused with EPERM"
        elif trailer.seccomp == 2:
            seccomp += ", in force: a seccomp filter is loaded"
        return {"runtime": in_force, "sandbox_kernel": kernel, "seccomp": seccomp}
