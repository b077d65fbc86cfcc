{{/* The chart's name, and the release's full name (63 characters at most). */}}
{{- define "mcpwall.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcpwall.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mcpwall.redisName" -}}
{{- printf "%s-redis" (include "mcpwall.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "mcpwall.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "mcpwall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mcpwall.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpwall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "mcpwall.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpwall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "mcpwall.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcpwall.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mcpwall.policyConfigMap" -}}
{{- default (printf "%s-policy" (include "mcpwall.fullname" .)) .Values.policy.existingConfigMap -}}
{{- end -}}

{{/* Where the counters live: "redis" (in the chart), "url", "secret" or "" (none). */}}
{{- define "mcpwall.store" -}}
{{- if .Values.redis.enabled -}}redis
{{- else if .Values.externalRedis.url -}}url
{{- else if .Values.externalRedis.existingSecret.name -}}secret
{{- end -}}
{{- end -}}

{{/* Render-time checks: what would deploy but not work. */}}
{{- define "mcpwall.validate" -}}
{{- $store := include "mcpwall.store" . -}}
{{- if and (gt (int .Values.replicaCount) 1) (not $store) -}}
{{- fail (printf "replicaCount is %d but no shared store is set: each replica would keep counters of its own and no limit would hold. Set redis.enabled=true or externalRedis.url (or externalRedis.existingSecret.name)." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.existingSecret.name) -}}
{{- fail "redis.enabled and externalRedis are both set: choose one store." -}}
{{- end -}}
{{- if and .Values.externalRedis.url .Values.externalRedis.existingSecret.name -}}
{{- fail "externalRedis.url and externalRedis.existingSecret.name are both set: choose one." -}}
{{- end -}}
{{- if not (or .Values.upstream.url .Values.upstream.command) -}}
{{- fail "no upstream: set upstream.url (a remote MCP server) or upstream.command." -}}
{{- end -}}
{{- if and .Values.upstream.headers (not .Values.upstream.url) -}}
{{- fail "upstream.headers are for upstream.url, which is not set." -}}
{{- end -}}
{{- if and .Values.auth.issuer (not .Values.auth.audience) -}}
{{- fail "auth.issuer is set without auth.audience: tokens must be issued for this gateway." -}}
{{- end -}}
{{- if and .Values.auth.audience (not .Values.auth.issuer) -}}
{{- fail "auth.audience is set without auth.issuer." -}}
{{- end -}}
{{- end -}}

{{/* The --auth value: issuer=URL,audience=AUD[,scopes=a b][,jwks=URL][,resource=URL]. */}}
{{- define "mcpwall.auth" -}}
{{- $parts := list (printf "issuer=%s" .Values.auth.issuer) (printf "audience=%s" .Values.auth.audience) -}}
{{- with .Values.auth.scopes -}}{{- $parts = append $parts (printf "scopes=%s" (join " " .)) -}}{{- end -}}
{{- with .Values.auth.jwks -}}{{- $parts = append $parts (printf "jwks=%s" .) -}}{{- end -}}
{{- with .Values.auth.resource -}}{{- $parts = append $parts (printf "resource=%s" .) -}}{{- end -}}
{{- join "," $parts -}}
{{- end -}}
