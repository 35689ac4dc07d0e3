"""What a process reads once where it starts (a flow run, a CLI command, a worker): the settings,
the organisation's policy and the audit key. Stages get the parts they use as arguments, so one
run is judged by one policy and signed with one key, however long it runs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from tasks.core.chain import Keyring
from tasks.core.policy_config import LoadedPolicy, Signed, load_policy
from tasks.core.settings import Settings


@dataclass(frozen=True)
class Runtime:
    """Built once by an entry point (`Runtime(Settings.from_env())`); the policy and the key are
    read the first time they are asked for (a scoring run needs neither), then kept. Secrets stay
    out of its repr, as they do out of the settings'."""

    settings: Settings

    @cached_property
    def policy(self) -> LoadedPolicy:
        """The policy file MLOPS_POLICY names, as it was when this process first asked."""
        return load_policy(self.settings.policy_path)

    @cached_property
    def audit_key(self) -> Keyring | None:
        """The key that signs audit records (its Prefect Secret block read once)."""
        return self.settings.resolve_audit_key()

    @cached_property
    def signed(self) -> Signed:
        """The settings, the policy and the key together, for the stages that sign (reads the
        policy and the key if nothing asked for them yet)."""
        return Signed(settings=self.settings, policy=self.policy, key=self.audit_key)
