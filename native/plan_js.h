// Conversion of the JS LaunchPlan (plain data, validated by lib/plan) into
// the flat launch_plan the child reads.
#ifndef NODULARITY_PLAN_JS_H
#define NODULARITY_PLAN_JS_H

#include <napi.h>
#include "plan.h"

// Returns nullptr with a pending TypeError naming the field at fault.
std::unique_ptr<plan_store> plan_from_js(Napi::Env env, Napi::Object obj);

#endif
