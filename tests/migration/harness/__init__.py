# SPDX-License-Identifier: GPL-2.0
"""freehint test harness: QMP client, guest launcher, migration driver."""
