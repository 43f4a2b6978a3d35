"""An example agent: restart a service when its health check fails — when govcon allows it.

    GOVCON_URL=http://127.0.0.1:4007 GOVCON_TOKEN=gvc_… \
    SERVICE=api HEALTH_CMD="curl -fsS http://127.0.0.1:8000/health" \
    RESTART_CMD="systemctl restart api" ROLLBACK_CMD="systemctl restart api@previous" \
    python docs/examples/restart_agent.py

What it does, once (run it from cron or a systemd timer):
1. the service is healthy -> nothing to do (exit 0);
2. ask govcon for restart_service on SERVICE (a human is asked if the gate wants one; the agent waits
   up to APPROVAL_WAIT seconds) -> refused: do nothing (exit 3);
3. restart; check the kill switch; verify health three times, VERIFY_INTERVAL (2) seconds apart;
4. still unhealthy -> roll back and report rolled_back (exit 12); the restart itself failed -> the
   exception reports failed (exit 1); healthy -> succeeded (exit 0).

It needs httpx and console/agent_client.py (one file: copy it, or install govcon).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time

from console.agent_client import ActionRefused, GovconClient, OutcomeNotReported

log = logging.getLogger("restart-agent")

SERVICE = os.environ.get("SERVICE", "api")
HEALTH_CMD = shlex.split(os.environ.get("HEALTH_CMD", "curl -fsS http://127.0.0.1:8000/health"))
RESTART_CMD = shlex.split(os.environ.get("RESTART_CMD", f"systemctl restart {SERVICE}"))
ROLLBACK_CMD = shlex.split(os.environ.get("ROLLBACK_CMD", f"systemctl restart {SERVICE}@previous"))
APPROVAL_WAIT = float(os.environ.get("APPROVAL_WAIT", "600"))
VERIFY_INTERVAL = float(os.environ.get("VERIFY_INTERVAL", "2"))
CONFIDENCE = 0.93  # how sure the agent is that a restart fixes an unhealthy service


def healthy() -> bool:
    try:
        return subprocess.run(HEALTH_CMD, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def healthy_in_a_row(times: int = 3) -> bool:
    for i in range(times):
        if i:
            time.sleep(VERIFY_INTERVAL)
        if not healthy():
            return False
    return True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if healthy():
        log.info("%s is healthy: nothing to do", SERVICE)
        return 0
    with GovconClient(agent="restart-bot") as govcon:  # GOVCON_URL, GOVCON_TOKEN from the environment
        try:
            with govcon.action("restart_service", service=SERVICE, confidence=CONFIDENCE,
                               wait=APPROVAL_WAIT) as act:
                log.info("granted %s: restarting %s", act.grant_id, SERVICE)
                subprocess.run(RESTART_CMD, check=True, timeout=120)  # raises: reported as failed
                act.check_kill_switch()  # engaged meanwhile: stop here (reported as failed)
                if not healthy_in_a_row():
                    log.warning("%s still unhealthy after the restart: rolling back", SERVICE)
                    subprocess.run(ROLLBACK_CMD, check=True, timeout=120)
                    act.rolled_back()
        except ActionRefused as refused:
            log.warning("govcon refused or stopped the restart of %s: %s", SERVICE, refused)
            return 3
        except OutcomeNotReported as lost:
            log.error("%s", lost)  # the grant expires by itself, and govcon alerts naming this agent
            return 1
        except (subprocess.SubprocessError, OSError) as failed:
            log.error("restart of %s failed: %s", SERVICE, failed)
            return 1
    if act.outcome == "rolled_back":
        return 12
    log.info("%s restarted and healthy (%s)", SERVICE, act.grant_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
