# SPDX-License-Identifier: LGPL-2.1-or-later
"""A fake user database and PAM stack for tests: pam_matrix (from pam_wrapper) + nss_wrapper.

Nothing here needs root or touches /etc. Typical use:

    from pamenv import PamEnv, uses_asan

    pam = PamEnv(tmpdir, asan=uses_asan(helper))
    subprocess.Popen([helper, ...], env=pam.env(os.environ))

Default users: alice (uid 1001, in multichat-staff, password "alice-pw"),
bob (uid 1002, "bob-pw"), root (uid 0, "root-pw").

Danger (FACTS.md): preloading libpam_wrapper.so without PAM_WRAPPER=1 and a
service dir segfaults or spins at 100 % CPU, so env() always sets all of
them together, and under AddressSanitizer libasan must come first in
LD_PRELOAD.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass
from glob import glob

__all__ = ["User", "PamEnv", "DEFAULT_USERS", "available", "uses_asan"]


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    password: str
    groups: tuple = ()          # supplementary group names
    gid: int = None             # primary group; default: a group named like the user, gid = uid
    home: str = None
    shell: str = "/bin/false"


DEFAULT_USERS = (
    User("alice", 1001, "alice-pw", groups=("multichat-staff",)),
    User("bob", 1002, "bob-pw"),
    User("root", 0, "root-pw", home="/root"),
)

# Fixed so tests can name them; more groups get numbers from 2100 on.
DEFAULT_GROUPS = {"multichat-staff": 2000, "multichat-admin": 2001}


def _pkg_var(pkg, var):
    try:
        out = subprocess.run(["pkg-config", f"--variable={var}", pkg],
                             capture_output=True, text=True, check=True).stdout.strip()
        return out or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _find_lib(name):
    for d in ([_pkg_var(name.split(".")[0][3:], "libdir")] +
              glob("/usr/lib/*-linux-gnu") + ["/usr/lib64", "/usr/lib", "/usr/local/lib"]):
        if d and os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    return None


def _modules_dir():
    d = _pkg_var("pam_wrapper", "modules")
    if d and os.path.exists(os.path.join(d, "pam_matrix.so")):
        return d
    lib = _find_lib("libpam_wrapper.so")
    if lib:
        d = os.path.join(os.path.dirname(lib), "pam_wrapper")
        if os.path.exists(os.path.join(d, "pam_matrix.so")):
            return d
    return None


def available():
    """True when libpam_wrapper, libnss_wrapper and pam_matrix are installed
    (Debian: libpam-wrapper, libnss-wrapper)."""
    return bool(_find_lib("libpam_wrapper.so") and _find_lib("libnss_wrapper.so") and _modules_dir())


def _asan_runtime():
    try:
        p = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                           capture_output=True, text=True, check=True).stdout.strip()
        if os.path.isabs(p) and os.path.exists(p):
            return os.path.realpath(p)
    except (OSError, subprocess.CalledProcessError):
        pass
    return None


def uses_asan(binary):
    """Whether binary links the AddressSanitizer runtime (a -Db_sanitize=address build)."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "libasan.so" in out


class PamEnv:
    """Writes passwd, group, passdb and PAM service files under tmpdir.

    users: User objects (default DEFAULT_USERS).
    services: PAM service names that authenticate against pam_matrix
      (every user may use every one of them); any other service is denied.
    groups: extra {name: gid}; groups named in User.groups but not here get
      numbers automatically.
    asan: put the ASan runtime first in LD_PRELOAD (see uses_asan()).
    """

    def __init__(self, tmpdir, users=None, services=("multichat",), groups=None, asan=False):
        if not available():
            raise RuntimeError("pam_wrapper/nss_wrapper not installed (apt-get install libpam-wrapper libnss-wrapper)")
        self.dir = os.path.join(os.path.abspath(tmpdir), "pamenv")
        self.users = tuple(users if users is not None else DEFAULT_USERS)
        self.services = tuple(services)
        self.asan = asan
        self.service_dir = os.path.join(self.dir, "pam.d")
        self.passwd = os.path.join(self.dir, "passwd")
        self.group = os.path.join(self.dir, "group")
        self.passdb = os.path.join(self.dir, "passdb")
        self.groups = dict(DEFAULT_GROUPS)
        self.groups.update(groups or {})
        self._write()

    def user(self, name):
        return next(u for u in self.users if u.name == name)

    def _write(self):
        os.makedirs(self.service_dir, exist_ok=True)
        next_gid = 2100
        for u in self.users:
            for g in u.groups:
                if g not in self.groups:
                    while next_gid in self.groups.values():
                        next_gid += 1
                    self.groups[g] = next_gid

        members = {g: [] for g in self.groups}
        primary = {}
        for u in self.users:
            for g in u.groups:
                members[g].append(u.name)
            if u.gid is None:
                primary[u.name] = u.uid

        with open(self.passwd, "w") as f:
            for u in self.users:
                gid = u.uid if u.gid is None else u.gid
                home = u.home or f"/home/{u.name}"
                f.write(f"{u.name}:x:{u.uid}:{gid}:{u.name}:{home}:{u.shell}\n")
        with open(self.group, "w") as f:
            for name, gid in primary.items():
                if name not in self.groups:
                    f.write(f"{name}:x:{gid}:\n")
            for name, gid in self.groups.items():
                f.write(f"{name}:x:{gid}:{','.join(members[name])}\n")
        with open(self.passdb, "w") as f:
            for u in self.users:
                for s in self.services:
                    f.write(f"{u.name}:{u.password}:{s}\n")

        matrix = os.path.join(_modules_dir(), "pam_matrix.so")
        for s in self.services:
            with open(os.path.join(self.service_dir, s), "w") as f:
                f.write(f"auth required {matrix} passdb={self.passdb}\n"
                        f"account required {matrix} passdb={self.passdb}\n")
        with open(os.path.join(self.service_dir, "other"), "w") as f:
            for t in ("auth", "account", "password", "session"):
                f.write(f"{t} required pam_deny.so\n")

    def env(self, base_env=None):
        """A copy of base_env (default os.environ) that runs a process in
        this environment. All variables are set together or the preload is
        dangerous; do not drop some of them from the result."""
        env = dict(os.environ if base_env is None else base_env)
        preload = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split()
                   if "libasan" not in p and "pam_wrapper" not in p and "nss_wrapper" not in p]
        front = []
        if self.asan:
            rt = _asan_runtime()
            if not rt:
                raise RuntimeError("asan requested but gcc -print-file-name=libasan.so found nothing")
            front = [rt]
        # No libpam_wrapper preload: it copies the service files into one of
        # ~62 machine-wide /tmp/pam.X directories, picked racily, so
        # processes started together (ours or anyone's) overwrite or delete
        # each other's PAM configuration and right passwords fail. The auth
        # helper reads our service directory itself (pam_start_confdir).
        env["LD_PRELOAD"] = " ".join(front + [_find_lib("libnss_wrapper.so")] + preload)
        for k in ("PAM_WRAPPER", "PAM_WRAPPER_SERVICE_DIR", "PAM_WRAPPER_DISABLE_DEEPBIND"):
            env.pop(k, None)
        env["MULTICHAT_PAM_CONFDIR"] = self.service_dir
        env["NSS_WRAPPER_PASSWD"] = self.passwd
        env["NSS_WRAPPER_GROUP"] = self.group
        return env

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
