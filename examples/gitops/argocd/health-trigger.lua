-- Argo CD health check for kubelambda.dev/Trigger, from its Ready condition.
hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      hs.message = condition.reason .. ": " .. (condition.message or "")
      if condition.status == "True" then
        hs.status = "Healthy"
      elseif condition.reason == "FunctionNotFound" then
        -- Often only a matter of sync order: the Function arrives in the same sync.
        hs.status = "Progressing"
      else
        hs.status = "Degraded"
      end
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "waiting for the kubelambda operator"
return hs
