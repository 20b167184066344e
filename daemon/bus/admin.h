/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Room administration for the D-Bus objects: the BusBackend over rooms, Redis and the auth helper. */
#pragma once

#include "bus/bus.h"

extern const BusBackend admin_bus_backend;
