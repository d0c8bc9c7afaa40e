-- Argo CD health check for kubelambda.dev/Function, from its status conditions.
hs = {}
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the kubelambda operator"
  return hs
end
if status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to reconcile the latest spec"
  return hs
end
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    local message = condition.reason .. ": " .. (condition.message or "")
    if condition.status == "True" then
      -- Available, ScaledToZero (no pod: the next request starts one) or Waking.
      hs.status = "Healthy"
    elseif condition.reason == "Starting" or condition.reason == "Creating" then
      hs.status = "Progressing"
    else
      -- InvalidSpec, RuntimeUnavailable, CodeNotFound, CodeTooLarge, ResourceConflict,
      -- ApplyFailed, RolloutFailed: the operator cannot serve the Function as declared.
      hs.status = "Degraded"
    end
    hs.message = message
    return hs
  end
end
hs.status = "Progressing"
hs.message = "no Ready condition yet"
return hs
