"""How a failover, failback or regional drill ends, in words: what is left where (`left_in`)
and what to do next (`next_steps`), from its input and final status. Pure (workflow code)."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.replicas import create_command
    from stagecoach.payloads.common import Outcome
    from stagecoach.payloads.failover import DeployServiceInput, FailoverInput, FailoverStatus

from workflows.dr.replica_steps import replica_left_in


def describe_ending(
    inp: FailoverInput,
    st: FailoverStatus,
    *,
    deploys: Sequence[DeployServiceInput],
    dns_started: bool,
    instance_requested: bool,
    replica_promoting: bool,
) -> None:
    """Fill `st.left_in` and `st.next_steps` (and fail a drill that left scratch resources)."""
    kept = [c for c in st.created if c not in st.deleted]
    dns = inp.dns
    if inp.mode == "drill":
        st.left_in = [f"deleted: {d}" for d in st.deleted] + [
            f"NOT deleted (delete it by hand): {k}" for k in kept
        ]
        st.left_in.append("DNS and the services users reach: untouched (a drill)")
        if kept:
            st.outcome = Outcome.FAILED
            st.error = (st.error + "; " if st.error else "") + "scratch resources NOT deleted"
    elif st.outcome == Outcome.SUCCEEDED:
        st.left_in = [
            f"users: {dns.record.name if dns else 'DNS'} -> {', '.join(st.dns_after)} "
            f"({inp.to_region})",
            f"database: {inp.instance.instance} in {inp.to_region}",
        ]
        st.left_in += _replica_lines(inp, st)
        if inp.mode == "failover" and inp.source == "replica":
            st.left_in.append(
                f"read replica {inp.instance.instance} promoted: a standalone primary now; "
                f"{inp.source_instance.instance} in {inp.from_region} no longer replicates "
                "to it"
            )
        if inp.mode == "failover":
            st.next_steps = [
                f"releases and restores still target environments.{inp.env}.region "
                f"{inp.from_region}: set environments.{inp.env}.region: {inp.to_region} and "
                f"environments.{inp.env}.database.instance: {inp.instance.instance} to "
                f"release in {inp.to_region}",
                f"once {inp.from_region} is healthy: python starter.py failback {inp.env} --yes",
            ]
            if inp.source == "replica":
                st.next_steps.append(
                    f"the promoted replica no longer replicates: after the failback, "
                    f"recreate the read replica in {inp.to_region} before the next "
                    "failover --from replica"
                )
        else:
            st.next_steps = [
                f"recreate read replica {r.replica.name} of {inp.instance.instance} (the "
                f"failback deleted it for the restore; recreating it failed): "
                + create_command(inp.instance, r.replica)
                for r in st.replicas
                if r.state == "recreate_failed"
            ]
            st.next_steps += [
                f"if you changed environments.{inp.env}.region/database.instance for the "
                f"failover, set them back to {inp.to_region} and {inp.instance.instance}",
                f"the secondary resources in {inp.from_region} are no longer used by users: "
                f"{inp.source_instance.instance} and the services there; delete them when "
                "you no longer need them",
            ]
    else:
        untouched = (
            f"DNS: untouched, users still on {dns.record.name} -> "
            f"{', '.join(st.dns_before) or 'the old record'}"
            if dns and not dns_started
            else f"DNS: moved to {inp.to_region}"
            if st.dns_moved
            else "DNS: unknown"
        )
        st.left_in = [untouched]
        st.left_in += [f"deleted: {d}" for d in st.deleted]
        for k in kept:
            st.left_in.append(
                f"{k}: kept; a retry adopts it (or add --cleanup to remove what a failed "
                "failover created)"
            )
        st.left_in += _replica_lines(inp, st)
        if replica_promoting:
            st.left_in.append(
                f"read replica {inp.instance.instance}: promotion requested (it cannot be "
                "undone); a retry adopts the promoted instance"
            )
        if inp.mode == "failover":
            maybe = [f"service {d.ref.service} ({d.ref.region})" for d in deploys]
            ci = inp.create_instance
            if instance_requested and ci is not None:
                maybe.insert(0, f"instance {ci.ref.instance} ({ci.region})")
            for m in maybe:
                if m not in st.created and m not in st.deleted:
                    st.left_in.append(f"{m}: may exist (its step failed); a retry adopts it")


def _replica_lines(inp: FailoverInput, st: FailoverStatus) -> list[str]:
    """Failback: what became of each read replica of the primary (deleted for the restore)."""
    return [replica_left_in(r, inp.instance, "the failback's restore") for r in st.replicas]
