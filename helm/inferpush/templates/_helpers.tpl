{{/* Names, labels and the environment every inferpush container shares. */}}

{{- define "inferpush.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inferpush.fullname" -}}
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

{{- define "inferpush.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; pass (dict "root" $ "component" "api"). */}}
{{- define "inferpush.labels" -}}
helm.sh/chart: {{ include "inferpush.chart" .root }}
{{ include "inferpush.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: inferpush
{{- end }}

{{- define "inferpush.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferpush.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image of `make images`; pass (dict "root" $ "name" "inferpush-api"). */}}
{{- define "inferpush.image" -}}
{{- $registry := .root.Values.image.registry | trimSuffix "/" }}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- if $registry }}{{ printf "%s/%s:%s" $registry .name $tag }}{{ else }}{{ printf "%s:%s" .name $tag }}{{ end }}
{{- end }}

{{- define "inferpush.servicesSecret" -}}{{ include "inferpush.fullname" . }}-services{{- end }}
{{- define "inferpush.pusherSecret" -}}{{ .Values.pusher.existingSecret | default (printf "%s-pusher" (include "inferpush.fullname" .)) }}{{- end }}
{{- define "inferpush.authSecret" -}}{{ .Values.auth.existingSecret | default (printf "%s-auth" (include "inferpush.fullname" .)) }}{{- end }}
{{- define "inferpush.jwtSecret" -}}{{ .Values.auth.jwt.existingSecret | default (printf "%s-auth" (include "inferpush.fullname" .)) }}{{- end }}
{{- define "inferpush.deliverySecret" -}}{{ .Values.delivery.webhook.existingSecret | default (printf "%s-delivery" (include "inferpush.fullname" .)) }}{{- end }}
{{/* The chart's push server's Service: `<fullname>-soketi` or `<fullname>-sockudo`. */}}
{{- define "inferpush.pushHost" -}}{{ include "inferpush.fullname" . }}-{{ .Values.pushServer }}{{- end }}

{{/* Which JWTs the api accepts: "HS256", "RS256", or empty. */}}
{{- define "inferpush.jwtAlgorithm" -}}
{{- $jwt := .Values.auth.jwt }}
{{- if $jwt.hs256Secret }}HS256{{ else if $jwt.rs256PublicKey }}RS256{{ else if $jwt.existingSecret }}{{ $jwt.algorithm }}{{ end }}
{{- end }}

{{/* Refuses values that would deploy something unsafe or broken, with a message that says which. */}}
{{- define "inferpush.validate" -}}
{{- if or (eq .Values.pusher.key "app-key") (eq .Values.pusher.secret "app-secret") (eq .Values.pusher.appId "app-id") }}
{{- fail "pusher.appId/key/secret: Soketi's well-known development credentials (app-id, app-key, app-secret) are refused; leave key and secret empty to have them generated" }}
{{- end }}
{{- if and .Values.pusher.secret (lt (len .Values.pusher.secret) 16) }}
{{- fail "pusher.secret is shorter than 16 characters: too short to be a secret (leave it empty to have one generated)" }}
{{- end }}
{{- if and (not .Values.soketi.enabled) (not .Values.pusher.host) }}
{{- fail "soketi.enabled is false: set pusher.host (and port/scheme) to the Pusher-protocol server to use" }}
{{- end }}
{{- if and (not .Values.soketi.enabled) (not .Values.pusher.existingSecret) (or (not .Values.pusher.key) (not .Values.pusher.secret)) }}
{{- fail "soketi.enabled is false: give the existing Pusher server's app credentials (pusher.key and pusher.secret, or pusher.existingSecret)" }}
{{- end }}
{{- if and (not .Values.rabbitmq.url) (not .Values.rabbitmq.existingSecret) }}
{{- fail "rabbitmq: set rabbitmq.url or rabbitmq.existingSecret" }}
{{- end }}
{{- if and (not .Values.redis.url) (not .Values.redis.existingSecret) }}
{{- fail "redis: set redis.url or redis.existingSecret" }}
{{- end }}
{{- if and .Values.redis.sentinel.hosts (not .Values.redis.sentinel.masterName) }}
{{- fail "redis.sentinel.hosts is set: set redis.sentinel.masterName to the name of the master the Sentinels watch" }}
{{- end }}
{{- if and .Values.redis.sentinel.hosts .Values.redis.cluster.nodes }}
{{- fail "redis: set redis.sentinel or redis.cluster, not both (a Redis Cluster fails over by itself)" }}
{{- end }}
{{- if and (include "inferpush.jwtAlgorithm" .) (or (not .Values.auth.jwt.issuer) (not .Values.auth.jwt.audience)) }}
{{- fail "auth.jwt: JWTs are accepted, so auth.jwt.issuer and auth.jwt.audience are required (a token signed for another service would pass otherwise)" }}
{{- end }}
{{- if and (has "mqtt" .Values.delivery.sinks) (not .Values.delivery.mqtt.url) }}
{{- fail "delivery.sinks has mqtt: set delivery.mqtt.url to the broker (mqtt://host:1883 or mqtts://host:8883)" }}
{{- end }}
{{- if and .Values.ingress.tls.enabled (not .Values.ingress.tls.secretName) }}
{{- fail "ingress.tls.enabled: set ingress.tls.secretName to the Secret holding the certificate" }}
{{- end }}
{{- end }}

{{/* The environment of the api and of every worker. */}}
{{- define "inferpush.commonEnv" -}}
- name: AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.rabbitmq.existingSecret | default (include "inferpush.servicesSecret" .) }}
      key: {{ if .Values.rabbitmq.existingSecret }}{{ .Values.rabbitmq.existingSecretKey }}{{ else }}amqp-url{{ end }}
- name: INFERPUSH_AMQP_PREFIX
  value: {{ .Values.rabbitmq.prefix | quote }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | default (include "inferpush.servicesSecret" .) }}
      key: {{ if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}redis-url{{ end }}
- name: INFERPUSH_REDIS_PREFIX
  value: {{ .Values.redis.prefix | quote }}
{{- with .Values.redis.passwordSecret }}
- name: INFERPUSH_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.redis.passwordSecretKey }}
{{- end }}
{{- with .Values.redis.sentinel.hosts }}
- name: INFERPUSH_REDIS_SENTINELS
  value: {{ join "," . | quote }}
- name: INFERPUSH_REDIS_MASTER
  value: {{ $.Values.redis.sentinel.masterName | quote }}
{{- with $.Values.redis.sentinel.passwordSecret }}
- name: INFERPUSH_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.redis.sentinel.passwordSecretKey }}
{{- end }}
{{- end }}
{{- with .Values.redis.cluster.nodes }}
- name: INFERPUSH_REDIS_CLUSTER_NODES
  value: {{ join "," . | quote }}
{{- end }}
{{- if ne (toString .Values.redis.waitReplicas) "" }}
- name: INFERPUSH_REDIS_WAIT_REPLICAS
  value: {{ .Values.redis.waitReplicas | quote }}
{{- end }}
- name: INFERPUSH_RESULT_TTL
  value: {{ .Values.redis.resultTtl | quote }}
- name: PUSHER_APP_ID
  value: {{ .Values.pusher.appId | quote }}
- name: PUSHER_APP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "inferpush.pusherSecret" . }}
      key: app-key
- name: PUSHER_APP_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "inferpush.pusherSecret" . }}
      key: app-secret
- name: PUSHER_HOST
  value: {{ .Values.pusher.host | default (include "inferpush.pushHost" .) | quote }}
- name: PUSHER_PORT
  value: {{ .Values.pusher.port | quote }}
- name: PUSHER_SCHEME
  value: {{ .Values.pusher.scheme | quote }}
{{- if and .Values.soketi.enabled (eq .Values.pushServer "sockudo") }}
- name: INFERPUSH_PUSH_SERVER
  value: sockudo
{{- end }}
{{- if or .Values.pusher.encryptionMasterKey .Values.pusher.existingSecret }}
- name: PUSHER_ENCRYPTION_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "inferpush.pusherSecret" . }}
      key: encryption-master-key
      optional: {{ not .Values.pusher.encryptionMasterKey }}
{{- end }}
{{- with .Values.api.publicUrl }}
- name: INFERPUSH_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.tls.caConfigMap }}
- name: INFERPUSH_TLS_CA_FILE
  value: /etc/inferpush/ca/{{ .Values.tls.caConfigMapKey }}
{{- end }}
- name: INFERPUSH_SINKS
  value: {{ join "," .Values.delivery.sinks | quote }}
- name: INFERPUSH_MQTT_TOPIC_PREFIX
  value: {{ .Values.delivery.mqtt.topicPrefix | quote }}
{{- if has "webhook" .Values.delivery.sinks }}
- name: INFERPUSH_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "inferpush.deliverySecret" . }}
      key: webhook-secret
{{- end }}
{{- with .Values.delivery.webhook.allowedHosts }}
- name: INFERPUSH_WEBHOOK_ALLOWED_HOSTS
  value: {{ join "," . | quote }}
{{- end }}
- name: INFERPUSH_LOG_FORMAT
  value: {{ .Values.observability.logFormat | quote }}
{{- with .Values.observability.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Extra settings from an `env` map. */}}
{{- define "inferpush.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{/* Volumes every container mounts: a writable /tmp, and the CA bundle when given. */}}
{{- define "inferpush.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.tls.caConfigMap }}
- name: ca
  configMap:
    name: {{ .Values.tls.caConfigMap }}
{{- end }}
{{- end }}

{{- define "inferpush.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.caConfigMap }}
- name: ca
  mountPath: /etc/inferpush/ca
  readOnly: true
{{- end }}
{{- end }}

{{/* What only the workers need to deliver: the MQTT broker. */}}
{{- define "inferpush.deliveryEnv" -}}
{{- if has "mqtt" .Values.delivery.sinks }}
- name: INFERPUSH_MQTT_URL
  value: {{ .Values.delivery.mqtt.url | quote }}
{{- with .Values.delivery.mqtt.existingSecret }}
- name: INFERPUSH_MQTT_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: mqtt-username
- name: INFERPUSH_MQTT_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: mqtt-password
{{- end }}
{{- end }}
{{- end }}

{{/* The model repository's place in the pods. */}}
{{- define "inferpush.modelRepositoryEnv" -}}
- name: INFERPUSH_MODEL_REPOSITORY
  value: {{ .Values.modelRepository.path | quote }}
{{- end }}

{{/* Volumes of the model repository; `files`: a worker's (cards and files), else the api's (cards). */}}
{{- define "inferpush.modelVolumes" -}}
{{- $repo := .root.Values.modelRepository }}
{{- $source := $repo.files.source }}
{{- if or (and .files (eq $source "pvc")) (and (not .files) (eq $source "pvc") (not $repo.cardsConfigMap)) }}
- name: model-files
  persistentVolumeClaim:
    claimName: {{ required "modelRepository.files.claimName is required with source pvc" $repo.files.claimName }}
    readOnly: true
{{- else if and .files (eq $source "init") }}
- name: model-files
  emptyDir:
    sizeLimit: {{ $repo.files.sizeLimit }}
{{- end }}
{{- if $repo.cardsConfigMap }}
- name: model-cards
  configMap:
    name: {{ $repo.cardsConfigMap }}
{{- end }}
{{- end }}

{{- define "inferpush.modelMounts" -}}
{{- $repo := .root.Values.modelRepository }}
{{- $source := $repo.files.source }}
{{- if or (and .files (ne $source "image")) (and (not .files) (eq $source "pvc") (not $repo.cardsConfigMap)) }}
- name: model-files
  mountPath: {{ $repo.path }}
  readOnly: true
{{- end }}
{{- if $repo.cardsConfigMap }}
{{- if not $repo.cards }}
{{- fail "modelRepository.cards must name the models whose cards the ConfigMap holds" }}
{{- end }}
{{- range $repo.cards }}
- name: model-cards
  mountPath: {{ printf "%s/%s/model.toml" $repo.path . }}
  subPath: {{ printf "%s.toml" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* The init container that fills the workers' model files (source `init`). */}}
{{- define "inferpush.modelInit" -}}
{{- $repo := .Values.modelRepository }}
{{- if eq $repo.files.source "init" }}
initContainers:
  - name: model-files
    image: {{ required "modelRepository.files.init.image is required with source init" $repo.files.init.image }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command:
      {{- toYaml (required "modelRepository.files.init.command is required with source init" $repo.files.init.command) | nindent 6 }}
    env:
      {{- include "inferpush.modelRepositoryEnv" . | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    resources:
      {{- toYaml $repo.files.init.resources | nindent 6 }}
    volumeMounts:
      - name: model-files
        mountPath: {{ $repo.path }}
      - name: tmp
        mountPath: /tmp
{{- end }}
{{- end }}
