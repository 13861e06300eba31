{{/*
Names, labels and the values the templates derive from `config` (ports, drain timeout), with the
checks that refuse a release that could not work (`fail`): a loopback admin address, a privileged
port, a grace period not longer than the drain, a `${VAR}` the pod does not set.
*/}}

{{- define "smtp-lb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "smtp-lb.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "smtp-lb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "smtp-lb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smtp-lb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object but the component, which says what the object is for. */}}
{{- define "smtp-lb.commonLabels" -}}
helm.sh/chart: {{ include "smtp-lb.chart" . }}
{{ include "smtp-lb.selectorLabels" . }}
app.kubernetes.io/version: {{ include "smtp-lb.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/part-of: smtp-lb
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "smtp-lb.labels" -}}
{{ include "smtp-lb.commonLabels" . }}
app.kubernetes.io/component: smtp-proxy
{{- end }}

{{- define "smtp-lb.imageTag" -}}
{{- toString (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "smtp-lb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "smtp-lb.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "smtp-lb.redisSecretName" -}}
{{- default (printf "%s-redis" (include "smtp-lb.fullname" .)) .Values.redis.existingSecret }}
{{- end }}

{{/* The port of a `host:port` (IPv6 as `[::]:port`); fails on anything else. Argument: (list where value). */}}
{{- define "smtp-lb.port" -}}
{{- $where := index . 0 }}
{{- $value := toString (index . 1) }}
{{- $port := regexFind "[0-9]+$" $value }}
{{- if or (not (regexMatch "^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$" $value)) (gt (atoi $port) 65535) }}
{{- fail (printf "%s is %q: the chart needs a literal host:port there (no ${VAR}) to know the container port" $where $value) }}
{{- end }}
{{- $port }}
{{- end }}

{{/* The admin port, from config.admin.listen, which must be reachable from the kubelet. */}}
{{- define "smtp-lb.adminPort" -}}
{{- $admin := default dict .Values.config.admin }}
{{- $listen := toString (default "127.0.0.1:9090" $admin.listen) }}
{{- if regexMatch "^(127\\.[0-9.]+|localhost|\\[::1\\]):" $listen }}
{{- fail (printf "config.admin.listen is %q: the kubelet probes /healthz and /readyz and Prometheus scrapes /metrics from outside the pod, so listen on 0.0.0.0 (the NetworkPolicy can restrict it)" $listen) }}
{{- end }}
{{- include "smtp-lb.port" (list "config.admin.listen" $listen) }}
{{- end }}

{{/* The container port of a listener named in service.ports. Argument: (list $ listenerName). */}}
{{- define "smtp-lb.listenerPort" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- $found := "" }}
{{- range $i, $l := $root.Values.config.listeners }}
{{- if eq $l.name $name }}
{{- $found = include "smtp-lb.port" (list (printf "config.listeners[%d].listen" $i) $l.listen) }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "service.ports names listener %q, which config.listeners does not have" $name) }}
{{- end }}
{{- if lt (atoi $found) 1024 }}
{{- fail (printf "listener %q listens on port %s: the container runs as non-root without capabilities and cannot bind ports below 1024; listen on 2525 (for 25) and let the Service map the public port" $name $found) }}
{{- end }}
{{- $found }}
{{- end }}

{{/* config.drainTimeout in whole seconds, rounded up (`30s`, `1m30s`, `500ms`, or milliseconds). */}}
{{- define "smtp-lb.drainSeconds" -}}
{{- $raw := toString (default "30s" .Values.config.drainTimeout) }}
{{- $ms := 0.0 }}
{{- if regexMatch "^[0-9]+$" $raw }}
{{- $ms = float64 $raw }}
{{- else if regexMatch "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" $raw }}
{{- $unit := dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 }}
{{- range regexFindAll "[0-9.]+(ms|s|m|h)" $raw -1 }}
{{- $u := regexFind "(ms|s|m|h)$" . }}
{{- $ms = addf $ms (mulf (float64 (trimSuffix $u .)) (get $unit $u)) }}
{{- end }}
{{- else }}
{{- fail (printf "config.drainTimeout is %q: the chart needs a literal duration there (no ${VAR}) to size the pod's grace period" $raw) }}
{{- end }}
{{- ceil (divf $ms 1000.0) | int }}
{{- end }}

{{/* Grace period: longer than preStop sleep + drain, or the chart refuses to render. */}}
{{- define "smtp-lb.gracePeriod" -}}
{{- $drain := include "smtp-lb.drainSeconds" . | int }}
{{- $sleep := int .Values.preStopSleepSeconds }}
{{- $need := add $drain $sleep }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $need 10 }}
{{- else }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- if le $grace $need }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than config.drainTimeout (%ds) + preStopSleepSeconds (%ds), or Kubernetes kills nodes that are still draining" $grace $drain $sleep) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* Names of the environment variables the container gets from the chart. */}}
{{- define "smtp-lb.envNames" -}}
{{- $names := list "HOSTNAME" "POD_NAME" "POD_NAMESPACE" "POD_IP" "HOST_IP" }}
{{- if .Values.consul.enabled }}
{{- $names = append $names "CONSUL_HTTP_ADDR" }}
{{- if .Values.consul.tokenSecret.name }}
{{- $names = append $names "CONSUL_HTTP_TOKEN" }}
{{- end }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- $names = append $names "SMTP_LB_REDIS_URL" }}
{{- end }}
{{- range .Values.extraEnv }}
{{- $names = append $names .name }}
{{- end }}
{{- join " " $names }}
{{- end }}

{{/* Every `${VAR}` (without a `:-default`) in config must be set in the pod, or the node would not start. */}}
{{- define "smtp-lb.checkConfigEnv" -}}
{{- if not .Values.extraEnvFrom }}
{{- $have := splitList " " (include "smtp-lb.envNames" .) }}
{{- range regexFindAll "\\$?\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" (toYaml .Values.config) -1 }}
{{- if not (hasPrefix "$$" .) }}
{{- $var := trimSuffix "}" (trimPrefix "${" .) }}
{{- if not (has $var $have) }}
{{- fail (printf "config uses %s, which the pod does not set: enable consul/redis, add it to extraEnv, or write ${%s:-default}" . $var) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
