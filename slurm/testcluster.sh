#!/usr/bin/env bash
# A real single-node Slurm cluster (Slurm 22.05 + slurmdbd + MariaDB + munge) for tests and CI on Debian 12.
#
# Usage: testcluster.sh install|start|stop|status|reset
#   install  apt-get install the packages (quick no-op when they are already there)
#   start    write the configs, start munged, MariaDB, slurmdbd, slurmctld, slurmd; wait until the node is idle.
#            Idempotent: a healthy cluster with current configs is left alone; stale configs restart it.
#   stop     stop the daemons by the pids in their pid files (never by name)
#   status   exit 0 iff the cluster and its accounting answer and the node is idle/mixed/allocated/completing
#   reset    stop, wipe the Slurm state and the job accounting database, start again (job ids restart at 1)
#
# TESTCLUSTER_TASK_PLUGIN (default task/none) and TESTCLUSTER_TASK_PLUGIN_PARAM (default: no such line): the
# TaskPlugin(Param) to render, e.g. task/affinity + Cores for a test of the CPUs a job step is bound to;
# `start` without them renders the usual config again (and restarts the daemons).
# Must run as root. Works from any cwd. Logs: /var/log/slurm/. See slurm/README.md for the config choices.
set -euo pipefail

readonly CLUSTER_NAME="sparta"
readonly CONF_DIR="/etc/slurm"
readonly SLURM_CONF="${CONF_DIR}/slurm.conf"
readonly DBD_CONF="${CONF_DIR}/slurmdbd.conf"
readonly LOG_DIR="/var/log/slurm"
readonly RUN_DIR="/run/slurm"
readonly STATE_DIR="/var/lib/slurm/slurmctld"
readonly SPOOL_DIR="/var/lib/slurm/slurmd"
readonly MUNGE_KEY="/etc/munge/munge.key"
readonly MUNGE_PID="/run/munge/munged.pid"
readonly MARIADB_PID="/run/mysqld/mysqld.pid"
readonly DB_NAME="slurm_acct_db"
readonly DB_USER="slurm"
readonly MARKER="# Written by sparta-hpc slurm/testcluster.sh"
readonly PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
readonly START_TIMEOUT_S=60

log() { printf 'testcluster: %s\n' "$*"; }
die() {
    printf 'testcluster: ERROR: %s\n' "$*" >&2
    exit 1
}

need_root() {
    [[ ${EUID} -eq 0 ]] || die "must run as root (it installs packages, writes /etc/slurm and starts daemons)"
}

need_installed() {
    local cmd
    for cmd in slurmctld slurmd slurmdbd sacctmgr munged mariadb; do
        command -v "${cmd}" >/dev/null || die "${cmd} not found: run '$0 install' first"
    done
}

# ---------------------------------------------------------------------------------------------- install

cmd_install() {
    need_root
    local missing=() pkg status
    for pkg in "${PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)"
        [[ ${status} == "install ok installed" ]] || missing+=("${pkg}")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "packages already installed: ${PACKAGES[*]}"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian/Ubuntu only"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        log "no apt package lists yet: running apt-get update"
        apt-get update || die "apt-get update failed"
    fi
    # Install from the current lists; refresh them and retry only when that fails (stale lists).
    if ! apt-get install -y --no-install-recommends "${PACKAGES[@]}"; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update || die "apt-get update failed"
        apt-get install -y --no-install-recommends "${PACKAGES[@]}" || die "apt-get install failed"
    fi
    log "installed: $(slurmctld -V)"
}

# ---------------------------------------------------------------------------------------------- configs

# The node line of `slurmd -C` without the RealMemory field (we set our own, a bit under MemTotal).
node_hardware() {
    slurmd -C | head -n1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' |
        tr '\n' ' ' | sed 's/ $//'
}

render_slurm_conf() {
    local host node_hw mem_total_mb real_mem_mb task_param=""
    [[ -z ${TESTCLUSTER_TASK_PLUGIN_PARAM:-} ]] || task_param=$'\n'"TaskPluginParam=${TESTCLUSTER_TASK_PLUGIN_PARAM}"
    host="$(hostname -s)"
    node_hw="$(node_hardware)"
    [[ ${node_hw} == *CPUs=* ]] || die "could not read the node hardware from 'slurmd -C'"
    mem_total_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
    real_mem_mb=$((mem_total_mb * 95 / 100))
    cat <<EOF
${MARKER} (Slurm $(slurmctld -V | awk '{print $2}')). Do not edit: rerun 'testcluster.sh start'.
ClusterName=${CLUSTER_NAME}
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=${TESTCLUSTER_TASK_PLUGIN:-task/none}${task_param}
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
SchedulerParameters=sched_interval=2,bf_interval=2
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=1
SlurmctldParameters=preempt_send_user_signal
MaxArraySize=1001
MaxJobCount=20000
MinJobAge=10
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
NodeName=${host} NodeAddr=127.0.0.1 ${node_hw} RealMemory=${real_mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=60
PartitionName=high Nodes=${host} MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
}

# Reuse the database password of an existing slurmdbd.conf so that rendering is stable across runs.
db_password() {
    local pass=""
    [[ -f ${DBD_CONF} ]] && pass="$(sed -n 's/^StoragePass=//p' "${DBD_CONF}")"
    [[ -n ${pass} ]] || pass="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    printf '%s' "${pass}"
}

render_dbd_conf() {
    cat <<EOF
${MARKER}. Do not edit: rerun 'testcluster.sh start'.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
LogFile=${LOG_DIR}/slurmdbd.log
PidFile=${RUN_DIR}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=${DB_USER}
StoragePass=$1
StorageLoc=${DB_NAME}
EOF
}

# Refuse to overwrite a Slurm config that this script did not write (e.g. on a real cluster's node).
check_owned() {
    local f
    for f in "${SLURM_CONF}" "${DBD_CONF}"; do
        if [[ -f ${f} ]] && ! head -n1 "${f}" | grep -qF "${MARKER}"; then
            die "${f} exists and was not written by this script; refusing to overwrite it"
        fi
    done
}

# ---------------------------------------------------------------------------------------------- daemons

# pid_alive PIDFILE NAME...: the pid in PIDFILE is alive and its command is one of NAME (guards pid reuse).
pid_alive() {
    local pidfile=$1 pid comm name
    shift
    [[ -s ${pidfile} ]] || return 1
    pid="$(tr -dc '0-9' <"${pidfile}")"
    [[ -n ${pid} ]] && [[ -r /proc/${pid}/comm ]] || return 1
    comm="$(cat "/proc/${pid}/comm")"
    for name in "$@"; do
        [[ ${comm} == "${name}" ]] && return 0
    done
    return 1
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.2 s until it succeeds.
wait_for() {
    local timeout_s=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + timeout_s))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    log "${what}: ok"
}

# stop_pid PIDFILE NAME...: SIGTERM the process of PIDFILE, SIGKILL after 30 s.
stop_pid() {
    local pidfile=$1 pid deadline
    shift
    if ! pid_alive "${pidfile}" "$@"; then
        rm -f "${pidfile}"
        return 0
    fi
    pid="$(tr -dc '0-9' <"${pidfile}")"
    log "stopping $1 (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while [[ -d /proc/${pid} ]] && ((SECONDS < deadline)); do sleep 0.2; done
    if [[ -d /proc/${pid} ]]; then
        log "$1 (pid ${pid}) ignored SIGTERM for 30 s; sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "${pidfile}"
}

munge_ok() { munge -n </dev/null | unmunge >/dev/null; }

start_munge() {
    if [[ ! -s ${MUNGE_KEY} ]]; then
        log "creating ${MUNGE_KEY}"
        install -d -o munge -g munge -m 700 /etc/munge
        runuser -u munge -- mungekey --create --keyfile="${MUNGE_KEY}"
        chmod 600 "${MUNGE_KEY}"
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    if ! pid_alive "${MUNGE_PID}" munged; then
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged
    fi
    wait_for 20 "munge" munge_ok || die "munged does not answer; see /var/log/munge/munged.log"
}

mariadb_ok() { mariadb -u root -e 'SELECT 1'; }

start_mariadb() {
    if ! pid_alive "${MARIADB_PID}" mariadbd mysqld || ! mariadb_ok >/dev/null 2>&1; then
        log "starting MariaDB"
        /etc/init.d/mariadb start >/dev/null || die "MariaDB failed to start; see /var/log/mysql/error.log"
    fi
    wait_for 30 "MariaDB" mariadb_ok || die "MariaDB does not answer"
}

setup_database() {
    local pass=$1
    mariadb -u root <<EOF || die "could not create the accounting database ${DB_NAME}"
CREATE DATABASE IF NOT EXISTS ${DB_NAME};
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${pass}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${pass}';
GRANT ALL ON ${DB_NAME}.* TO '${DB_USER}'@'localhost';
EOF
}

dbd_ok() { sacctmgr -n -P list cluster format=cluster; }
cluster_registered() { sacctmgr -n -P list cluster format=cluster | grep -qx "${CLUSTER_NAME}"; }

start_slurmdbd() {
    if ! pid_alive "${RUN_DIR}/slurmdbd.pid" slurmdbd; then
        log "starting slurmdbd"
        slurmdbd || die "slurmdbd failed to start; see ${LOG_DIR}/slurmdbd.log"
    fi
    wait_for 30 "slurmdbd" dbd_ok || die "slurmdbd does not answer; see ${LOG_DIR}/slurmdbd.log"
    if ! cluster_registered; then
        log "registering cluster ${CLUSTER_NAME} in the accounting database"
        sacctmgr -i add cluster "${CLUSTER_NAME}" >/dev/null || die "sacctmgr add cluster ${CLUSTER_NAME} failed"
    fi
}

node_state() { sinfo -h -N -o %T 2>/dev/null | head -n1 || true; }
node_usable() { [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]; }

start_slurm() {
    if ! pid_alive "${RUN_DIR}/slurmctld.pid" slurmctld; then
        log "starting slurmctld"
        slurmctld || die "slurmctld failed to start; see ${LOG_DIR}/slurmctld.log"
    fi
    wait_for 30 "slurmctld" scontrol ping || die "slurmctld does not answer; see ${LOG_DIR}/slurmctld.log"
    if ! pid_alive "${RUN_DIR}/slurmd.pid" slurmd; then
        log "starting slurmd"
        slurmd || die "slurmd failed to start; see ${LOG_DIR}/slurmd.log"
    fi
    if ! wait_for 10 "node registered" node_usable; then
        # A node left down or drained by an earlier run (e.g. a killed slurmd) stays so until resumed.
        log "node is '$(node_state)'; resuming it"
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    fi
    wait_for "${START_TIMEOUT_S}" "node idle" node_usable ||
        die "node is '$(node_state)', not idle; see ${LOG_DIR}/slurmd.log and ${LOG_DIR}/slurmctld.log"
}

healthy() {
    pid_alive "${RUN_DIR}/slurmctld.pid" slurmctld && pid_alive "${RUN_DIR}/slurmd.pid" slurmd &&
        pid_alive "${RUN_DIR}/slurmdbd.pid" slurmdbd && node_usable && cluster_registered >/dev/null 2>&1 &&
        sacct -n -X -S now >/dev/null 2>&1
}

stop_slurm_daemons() {
    stop_pid "${RUN_DIR}/slurmd.pid" slurmd
    stop_pid "${RUN_DIR}/slurmctld.pid" slurmctld
    stop_pid "${RUN_DIR}/slurmdbd.pid" slurmdbd
}

# ---------------------------------------------------------------------------------------------- commands

cmd_start() {
    need_root
    need_installed
    check_owned
    local t0=${SECONDS} pass tmp_conf tmp_dbd stale=0 active
    pass="$(db_password)"
    tmp_conf="$(mktemp)"
    tmp_dbd="$(mktemp)"
    # shellcheck disable=SC2064  # expand the paths now
    trap "rm -f '${tmp_conf}' '${tmp_dbd}'" EXIT
    render_slurm_conf >"${tmp_conf}"
    render_dbd_conf "${pass}" >"${tmp_dbd}"
    cmp -s "${tmp_conf}" "${SLURM_CONF}" || stale=1
    cmp -s "${tmp_dbd}" "${DBD_CONF}" || stale=1
    if ((stale == 0)) && healthy; then
        log "already running and healthy (cluster ${CLUSTER_NAME}, node $(hostname -s) $(node_state))"
        return 0
    fi
    if ((stale == 1)); then
        log "configs missing or stale: (re)writing them and restarting the Slurm daemons"
        active="$(squeue -h -t RUNNING,COMPLETING 2>/dev/null | wc -l || true)"
        if ((active > 0)); then
            log "WARNING: ${active} running job(s): a job being launched while slurmd restarts may stay RUNNING" \
                "in slurmctld without a process (scancel it)"
        fi
        stop_slurm_daemons
    fi
    install -d -o slurm -g slurm -m 755 "${LOG_DIR}" "${RUN_DIR}" "${STATE_DIR}" "${SPOOL_DIR}"
    install -o root -g root -m 644 "${tmp_conf}" "${SLURM_CONF}"
    install -o slurm -g slurm -m 600 "${tmp_dbd}" "${DBD_CONF}"
    start_munge
    start_mariadb
    setup_database "${pass}"
    start_slurmdbd
    start_slurm
    log "cluster ${CLUSTER_NAME} up in $((SECONDS - t0)) s: node $(hostname -s) $(node_state); partitions:" \
        "$(sinfo -h -o '%P' | tr '\n' ' ')"
}

cmd_stop() {
    need_root
    stop_slurm_daemons
    stop_pid "${MARIADB_PID}" mariadbd mysqld
    stop_pid "${MUNGE_PID}" munged
    log "stopped"
}

cmd_status() {
    command -v sinfo >/dev/null || {
        log "not installed"
        return 1
    }
    local state
    if ! scontrol ping >/dev/null 2>&1; then # fails at once where sinfo retries for 9 s
        log "down: slurmctld does not answer"
        return 1
    fi
    state="$(node_state)"
    if [[ -z ${state} ]]; then
        log "down: sinfo does not answer"
        return 1
    fi
    if ! node_usable; then
        log "unhealthy: node state '${state}'"
        return 1
    fi
    if ! sacct -n -X -S now >/dev/null 2>&1; then
        log "unhealthy: node '${state}' but sacct (accounting, needed by submitit) does not answer"
        return 1
    fi
    log "up: node $(hostname -s) ${state}; partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
}

cmd_reset() {
    need_root
    need_installed
    stop_slurm_daemons
    log "wiping ${STATE_DIR}, ${SPOOL_DIR} and the accounting database ${DB_NAME}"
    find "${STATE_DIR}" "${SPOOL_DIR}" -mindepth 1 -delete 2>/dev/null || true
    start_mariadb
    mariadb -u root -e "DROP DATABASE IF EXISTS ${DB_NAME}" || die "could not drop ${DB_NAME}"
    cmd_start
}

main() {
    case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    *)
        sed -n '4,10p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
}

main "$@"
