#!/usr/bin/env bash
# pinned.winrm.psrp against the Windows hosts of the inventory ansible-test was given (--target inventory:PATH,
# or --inventory PATH): every host of its `windows` group, through whatever proxy its ansible_psrp_* variables
# name. Modelled on ansible-core's connection_psrp target: the same hosts, switched to this plugin.
set -eux

INVENTORY="${INVENTORY_PATH:-../../inventory.winrm}"

# the playbooks put the inventory's hosts, whatever connection they were written for, on pinned.winrm.psrp
ansible-playbook -i "${INVENTORY}" tests.yml "$@"
# persistence off: the same plugin opening a session per task, as ansible.builtin.psrp does
ansible-playbook -i "${INVENTORY}" tests_per_task.yml "$@"
